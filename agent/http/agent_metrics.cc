#include "http/agent_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace tokenmem::http {
namespace {

size_t OperationIndex(std::string_view operation) {
  for (size_t i = 0; i + 1 < kOperations.size(); ++i) {
    if (kOperations[i] == operation) return i;
  }
  return kOperations.size() - 1;  // "other"
}

double Seconds(std::chrono::nanoseconds elapsed) {
  return std::chrono::duration<double>(elapsed).count();
}

}  // namespace

std::string_view DataPathName(DataPath path) {
  switch (path) {
    case DataPath::kControl:
      return "control";
    case DataPath::kLocal:
      return "local";
    case DataPath::kRemote:
      return "remote";
  }
  return "control";
}

const std::vector<double>& OperationBuckets() {
  // 10 µs (a local shared-memory get) up to 10 s (a large batch over gRPC).
  static const std::vector<double> kBuckets = {
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,     0.1,     0.25,   0.5,     1,      2.5,   5,      10};
  return kBuckets;
}

const std::vector<double>& NvmeIoBuckets() {
  // 10 µs (a fast NVMe read) up to 1 s (a device in trouble).
  static const std::vector<double> kBuckets = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                               0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                               0.1,     0.25,     0.5,     1};
  return kBuckets;
}

AgentMetrics::AgentMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  operation_duration_ =
      &prometheus::BuildHistogram()
           .Name("tokenmem_operation_duration_seconds")
           .Help(
               "Time the agent took to answer a data call (a batch of keys), by operation "
               "and by the path the call came in on (control: the gRPC API).")
           .Register(*registry_);
  operation_errors_ = &prometheus::BuildCounter()
                           .Name("tokenmem_operation_errors_total")
                           .Help(
                               "Data calls that failed as a whole (bad request, unknown "
                               "lease or pool, quota), by operation and path.")
                           .Register(*registry_);
  for (size_t op = 0; op < kOperations.size(); ++op) SeriesFor(DataPath::kControl, op);

  auto& io_duration = prometheus::BuildHistogram()
                          .Name("tokenmem_nvme_io_duration_seconds")
                          .Help(
                              "Latency of one NVMe tier read or write (one block, O_DIRECT "
                              "through io_uring).")
                          .Register(*registry_);
  auto& io_bytes = prometheus::BuildCounter()
                       .Name("tokenmem_nvme_io_bytes_total")
                       .Help(
                           "Bytes moved to or from the NVMe tier's files, slot headers and "
                           "4 KiB alignment included.")
                       .Register(*registry_);
  auto& io_errors = prometheus::BuildCounter()
                        .Name("tokenmem_nvme_io_errors_total")
                        .Help("NVMe tier reads and writes that the kernel or device failed.")
                        .Register(*registry_);
  for (nvme::IoOp op : {nvme::IoOp::kRead, nvme::IoOp::kWrite}) {
    const std::string name = op == nvme::IoOp::kRead ? "read" : "write";
    IoSeries& s = io_[static_cast<size_t>(op)];
    s.duration = &io_duration.Add({{"operation", name}}, NvmeIoBuckets());
    s.bytes = &io_bytes.Add({{"operation", name}});
    s.errors = &io_errors.Add({{"operation", name}});
  }

  auto& rejections = prometheus::BuildCounter()
                         .Name("tokenmem_limit_rejections_total")
                         .Help(
                             "Requests and connections refused because a limit was reached "
                             "(docs/limits.md), by limit.")
                         .Register(*registry_);
  for (size_t i = 0; i < limits::kLimitCount; ++i) {
    const auto limit = static_cast<limits::Limit>(i);
    limit_rejections_[i] = &rejections.Add({{"limit", std::string(limits::LimitName(limit))}});
  }
}

AgentMetrics::~AgentMetrics() = default;

const AgentMetrics::OperationSeries* AgentMetrics::SeriesFor(DataPath path, size_t operation) {
  auto& slot = operations_[static_cast<size_t>(path)][operation];
  if (const OperationSeries* s = slot.load(std::memory_order_acquire)) return s;
  std::lock_guard lock(create_mu_);
  if (const OperationSeries* s = slot.load(std::memory_order_acquire)) return s;
  const prometheus::Labels labels = {{"operation", std::string(kOperations[operation])},
                                     {"path", std::string(DataPathName(path))}};
  auto series = std::make_unique<OperationSeries>();
  series->duration = &operation_duration_->Add(labels, OperationBuckets());
  series->errors = &operation_errors_->Add(labels);
  slot.store(series.get(), std::memory_order_release);
  owned_.push_back(std::move(series));
  return owned_.back().get();
}

void AgentMetrics::ObserveOperation(DataPath path, std::string_view operation,
                                    std::chrono::nanoseconds elapsed, bool ok) {
  const OperationSeries* s = SeriesFor(path, OperationIndex(operation));
  s->duration->Observe(Seconds(elapsed));
  if (!ok) s->errors->Increment();
}

std::function<void(std::string_view, std::chrono::nanoseconds, bool)>
AgentMetrics::OperationRecorder(DataPath path) {
  return [this, path](std::string_view operation, std::chrono::nanoseconds elapsed, bool ok) {
    ObserveOperation(path, operation, elapsed, ok);
  };
}

void AgentMetrics::ObserveIo(nvme::IoOp op, std::chrono::nanoseconds elapsed, uint64_t bytes,
                             bool ok) {
  const IoSeries& s = io_[static_cast<size_t>(op)];
  s.duration->Observe(Seconds(elapsed));
  if (ok) {
    s.bytes->Increment(static_cast<double>(bytes));
  } else {
    s.errors->Increment();
  }
}

void AgentMetrics::OnLimit(limits::Limit limit) {
  limit_rejections_[static_cast<size_t>(limit)]->Increment();
}

std::string AgentMetrics::Serialize(
    const std::vector<const prometheus::Collectable*>& collectors) const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (const prometheus::Collectable* c : collectors) {
    auto more = c->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace tokenmem::http
