// AgentMetrics: the agent's event metrics (what the pools' snapshots cannot
// tell: call latencies, NVMe I/O latencies) in a prometheus-cpp registry,
// and the Prometheus text exposition of that registry together with any
// scrape-time collectors (pool_collector.h).
//
// Series (docs/observability.md lists every metric):
//   tokenmem_operation_duration_seconds{operation, path}  histogram
//   tokenmem_operation_errors_total{operation, path}      counter
//   tokenmem_nvme_io_duration_seconds{operation}          histogram (read, write)
//   tokenmem_nvme_io_bytes_total{operation}               counter
//   tokenmem_nvme_io_errors_total{operation}              counter
//   tokenmem_limit_rejections_total{limit}                counter (limits/limits.h)
// Label values come from fixed sets only, so cardinality is bounded: an
// operation name outside kOperations is recorded as "other".
//
// Thread-safe: every call may run from any thread at once. Observing is a
// few atomic adds; it never allocates after the first observation of a
// (path, operation) pair.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "limits/limits.h"
#include "nvme/io_observer.h"

namespace prometheus {
class Collectable;
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace tokenmem::http {

// The way a data call reached the agent: the gRPC control API today; the
// local shared-memory and remote (UCX) data paths when they exist.
enum class DataPath { kControl = 0, kLocal = 1, kRemote = 2 };
inline constexpr int kDataPathCount = 3;
std::string_view DataPathName(DataPath path);  // "control", "local", "remote"

// Values of the `operation` label, "other" last.
inline constexpr std::array<std::string_view, 8> kOperations = {
    "put", "get", "exists", "lookup_prefix", "delete", "pin", "unpin", "other"};

// Histogram bucket bounds, in seconds.
const std::vector<double>& OperationBuckets();
const std::vector<double>& NvmeIoBuckets();

class AgentMetrics final : public nvme::IoObserver, public limits::LimitObserver {
 public:
  // Registers the families. The control path's series exist from the start
  // (at zero); the local and remote paths' appear with their first call.
  AgentMetrics();
  ~AgentMetrics() override;
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  // Records one data call: its duration, and an error when !ok.
  void ObserveOperation(DataPath path, std::string_view operation, std::chrono::nanoseconds elapsed,
                        bool ok);

  // A callable for one path, shaped like control::OperationObserver; it
  // refers to this object, which must outlive it.
  std::function<void(std::string_view, std::chrono::nanoseconds, bool)> OperationRecorder(
      DataPath path);

  // nvme::IoObserver: one device read or write.
  void ObserveIo(nvme::IoOp op, std::chrono::nanoseconds elapsed, uint64_t bytes, bool ok) override;

  // limits::LimitObserver: a tenant hit a limit and was refused. Every
  // limit's series exists from the start (at zero).
  void OnLimit(limits::Limit limit) override;

  // The registry, for more event metrics; AgentMetrics keeps owning it.
  prometheus::Registry& registry() { return *registry_; }

  // The Prometheus text format (version 0.0.4) of the registry followed by
  // `collectors`' families. Family names must not repeat across them.
  std::string Serialize(const std::vector<const prometheus::Collectable*>& collectors) const;

 private:
  struct OperationSeries {
    prometheus::Histogram* duration = nullptr;
    prometheus::Counter* errors = nullptr;
  };
  struct IoSeries {
    prometheus::Histogram* duration = nullptr;
    prometheus::Counter* bytes = nullptr;
    prometheus::Counter* errors = nullptr;
  };
  const OperationSeries* SeriesFor(DataPath path, size_t operation);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>* operation_duration_ = nullptr;
  prometheus::Family<prometheus::Counter>* operation_errors_ = nullptr;
  std::mutex create_mu_;  // serialises creating series
  std::array<std::array<std::atomic<const OperationSeries*>, kOperations.size()>, kDataPathCount>
      operations_{};
  std::vector<std::unique_ptr<OperationSeries>> owned_;  // guarded by create_mu_
  std::array<IoSeries, 2> io_{};                         // indexed by nvme::IoOp
  std::array<prometheus::Counter*, limits::kLimitCount> limit_rejections_{};
};

}  // namespace tokenmem::http
