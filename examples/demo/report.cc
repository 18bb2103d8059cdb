#include "demo/report.h"

#include <cstdio>

#include "tokenmem/common/units.h"
#include "wire/codes.h"
#include "wire/json_writer.h"
#include "wire/table.h"

namespace tokenmem::demo {

namespace {

constexpr v1::TierKind kTiers[] = {v1::TIER_KIND_DRAM, v1::TIER_KIND_CXL, v1::TIER_KIND_NVME};

std::string Bytes(uint64_t n) { return HumanBytes(static_cast<double>(n)); }

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%",
                100.0 * static_cast<double>(part) / static_cast<double>(whole));
  return buf;
}

const v1::TierCounters* CountersOf(const DemoReport& r, v1::TierKind tier) {
  if (!r.pool_stats) return nullptr;
  for (const auto& c : r.pool_stats->tiers()) {
    if (c.tier() == tier) return &c;
  }
  return nullptr;
}

uint64_t TotalEvictions(const DemoReport& r) {
  uint64_t n = 0;
  if (r.pool_stats) {
    for (const auto& c : r.pool_stats->tiers()) n += c.evictions();
  }
  return n;
}

void Ratio(wire::JsonWriter& w, std::string_view key, uint64_t part, uint64_t whole) {
  w.Key(key);
  if (whole == 0) {
    w.Null();
  } else {
    w.Double(static_cast<double>(part) / static_cast<double>(whole));
  }
}

}  // namespace

std::string ReportText(const DemoReport& r, const std::string& ctl_flags) {
  std::string out = "tokenmem-demo: " + std::to_string(r.sessions) + " sessions x " +
                    std::to_string(r.turns) + " turns in pool " + r.pool +
                    (r.pool_created ? " (created)" : " (reused)") + ", " + r.path + " path (" +
                    r.path_description + ")\n" + "block " + Bytes(r.block_size) + ", " +
                    std::to_string(r.block_tokens) + " tokens and " + Bytes(r.kv_bytes_per_block) +
                    " of KV per block, " +
                    [&] {
                      char buf[32];
                      std::snprintf(buf, sizeof(buf), "%.2f s", r.seconds);
                      return std::string(buf);
                    }() +
                    "\n\n";
  std::string verified = r.verification_failures == 0
                             ? "every byte verified"
                             : std::to_string(r.verification_failures) + " FAILED VERIFICATION";
  out += wire::KeyValueLines({
      {"prompts", std::to_string(r.prompts)},
      {"prompt tokens", std::to_string(r.prompt_tokens)},
      {"prefix tokens reused", std::to_string(r.reused_tokens) + "  (" +
                                   Percent(r.reused_tokens, r.prompt_tokens) +
                                   " of prompt tokens)"},
      {"blocks looked up", std::to_string(r.blocks_looked_up) + "  (" +
                               std::to_string(r.blocks_matched) + " found, " +
                               Percent(r.blocks_matched, r.blocks_looked_up) + ")"},
      {"blocks read back",
       std::to_string(r.blocks_read) + "  (" + Bytes(r.bytes_read) + ", " + verified + ")"},
      {"blocks stored", std::to_string(r.blocks_stored) + "  (" + Bytes(r.bytes_stored) + ")"},
  });
  if (r.vanished_blocks > 0) {
    out += "blocks gone between lookup and read: " + std::to_string(r.vanished_blocks) +
           " (recomputed)\n";
  }
  if (r.put_failures > 0) {
    out += "PUTS REFUSED: " + std::to_string(r.put_failures) + " (first: " + r.first_put_failure +
           ")\n";
  }

  wire::Table hits(
      {{"TIER"}, {"HITS", wire::Table::Align::kRight}, {"HIT RATIO", wire::Table::Align::kRight}});
  for (v1::TierKind t : kTiers) {
    hits.AddRow({std::string(wire::TierName(t)), std::to_string(r.hits_by_tier[t]),
                 Percent(r.hits_by_tier[t], r.blocks_read)});
  }
  out += r.hits_per_read
             ? "\nBlocks read back, by the tier that served them:\n"
             : "\nHits in pool " + r.pool +
                   " during the run, by the tier that held each block read back\n"
                   "(the pool's counters, so every client's):\n";
  out += hits.Render();

  if (r.pool_stats) {
    wire::Table moves({{"TIER"},
                       {"DEMOTIONS OUT", wire::Table::Align::kRight},
                       {"BYTES DEMOTED", wire::Table::Align::kRight},
                       {"PROMOTIONS IN", wire::Table::Align::kRight},
                       {"BYTES PROMOTED", wire::Table::Align::kRight},
                       {"EVICTIONS", wire::Table::Align::kRight}});
    for (v1::TierKind t : kTiers) {
      const v1::TierCounters* c = CountersOf(r, t);
      if (c == nullptr) {
        moves.AddRow({std::string(wire::TierName(t)), "0", Bytes(0), "0", Bytes(0), "0"});
        continue;
      }
      moves.AddRow({std::string(wire::TierName(t)), std::to_string(c->demotions_out()),
                    Bytes(c->bytes_demoted_out()), std::to_string(c->promotions_in()),
                    Bytes(c->bytes_promoted_in()), std::to_string(c->evictions())});
    }
    out += "\nMovement in pool " + r.pool + " (the agent's counters, every client):\n" +
           moves.Render() + "evictions: " + std::to_string(TotalEvictions(r)) + "\n";
  }

  if (r.lease_created) {
    out += "\nlease " + r.lease_id + (r.lease_released ? " released" : " kept") +
           " (the stored blocks stay cached for the next run)\n";
  }
  out += "\nSee the agent:\n  tokenmemctl " + ctl_flags + " status\n  tokenmemctl " + ctl_flags +
         " stats --pool " + r.pool + "\n";
  return out;
}

std::string ReportJson(const DemoReport& r) {
  wire::JsonWriter w;
  w.BeginObject()
      .BoolField("ok", r.ok())
      .StringField("path", r.path)
      .StringField("path_description", r.path_description)
      .StringField("pool", r.pool)
      .BoolField("pool_created", r.pool_created)
      .UintField("block_size", r.block_size)
      .UintField("kv_bytes_per_block", r.kv_bytes_per_block)
      .UintField("block_tokens", r.block_tokens)
      .UintField("sessions", r.sessions)
      .UintField("turns", r.turns)
      .UintField("prompts", r.prompts)
      .UintField("prompt_tokens", r.prompt_tokens)
      .UintField("reused_tokens", r.reused_tokens);
  Ratio(w, "reused_ratio", r.reused_tokens, r.prompt_tokens);
  w.UintField("blocks_looked_up", r.blocks_looked_up)
      .UintField("blocks_matched", r.blocks_matched)
      .UintField("blocks_read", r.blocks_read)
      .UintField("blocks_stored", r.blocks_stored)
      .UintField("bytes_read", r.bytes_read)
      .UintField("bytes_stored", r.bytes_stored)
      .UintField("verification_failures", r.verification_failures)
      .UintField("vanished_blocks", r.vanished_blocks)
      .UintField("put_failures", r.put_failures);
  if (!r.first_put_failure.empty()) w.StringField("first_put_failure", r.first_put_failure);
  w.StringField("hits_source", r.hits_per_read ? "reads" : "pool_counters");
  w.Key("hits_by_tier").BeginObject();
  for (v1::TierKind t : kTiers) {
    w.Key(wire::TierName(t)).BeginObject().UintField("hits", r.hits_by_tier[t]);
    Ratio(w, "ratio", r.hits_by_tier[t], r.blocks_read);
    w.EndObject();
  }
  w.EndObject();
  w.Key("movement").BeginObject();
  for (v1::TierKind t : kTiers) {
    const v1::TierCounters* c = CountersOf(r, t);
    v1::TierCounters zero;
    if (c == nullptr) c = &zero;
    w.Key(wire::TierName(t))
        .BeginObject()
        .UintField("demotions_out", c->demotions_out())
        .UintField("bytes_demoted_out", c->bytes_demoted_out())
        .UintField("promotions_in", c->promotions_in())
        .UintField("bytes_promoted_in", c->bytes_promoted_in())
        .UintField("evictions", c->evictions())
        .EndObject();
  }
  w.EndObject();
  w.UintField("evictions", TotalEvictions(r));
  w.Key("lease")
      .BeginObject()
      .StringField("id", r.lease_id)
      .BoolField("created", r.lease_created)
      .BoolField("released", r.lease_released)
      .UintField("released_blocks", r.released_blocks)
      .EndObject();
  w.DoubleField("seconds", r.seconds).EndObject();
  return w.str();
}

}  // namespace tokenmem::demo
