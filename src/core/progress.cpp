#include "core/progress.hpp"

#include <algorithm>

#include <coraft/assert.hpp>

namespace coraft::core {

Inflights::Inflights(std::uint32_t msgs_max, std::uint64_t bytes_max)
    : ring_(std::max<std::uint32_t>(msgs_max, 1)), bytes_max_(bytes_max) {}

void Inflights::add(Index last, std::uint64_t bytes) {
  CORAFT_ASSERT(count_ < ring_.size(), count_);
  const auto size = static_cast<std::uint32_t>(ring_.size());
  if (count_ > 0) {
    const Slot& newest = ring_[(start_ + count_ - 1) % size];
    CORAFT_ASSERT(last > newest.last, last, newest.last);
  }
  ring_[(start_ + count_) % size] = Slot{last, bytes};
  ++count_;
  bytes_ += bytes;
}

void Inflights::free_to(Index index) {
  const auto size = static_cast<std::uint32_t>(ring_.size());
  while (count_ > 0 && ring_[start_].last <= index) {
    bytes_ -= ring_[start_].bytes;
    start_ = (start_ + 1) % size;
    --count_;
  }
}

void Inflights::reset() noexcept {
  start_ = 0;
  count_ = 0;
  bytes_ = 0;
}

void Progress::become_probe() noexcept {
  state = State::probe;
  probe_sent = false;
  next_index = match_index + 1;
  stall_ticks = 0;
  inflights.reset();
}

void Progress::become_snapshot(Index snapshot_index) noexcept {
  state = State::snapshot;
  probe_sent = false;
  pending_snapshot = snapshot_index;
  snapshot_ticks = 0;
  stall_ticks = 0;
  inflights.reset();
}

void Progress::become_replicate() noexcept {
  state = State::replicate;
  probe_sent = false;
  next_index = match_index + 1;
  stall_ticks = 0;
  inflights.reset();
}

bool Progress::acknowledge(Index index) noexcept {
  inflights.free_to(index);
  if (index <= match_index) return false;
  match_index = index;
  next_index = std::max(next_index, index + 1);
  stall_ticks = 0;
  return true;
}

}  // namespace coraft::core
