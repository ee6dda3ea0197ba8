#include "core/raft_log.hpp"

#include <algorithm>

#include <coraft/assert.hpp>

namespace coraft::core {

RaftLog::RaftLog(std::vector<Entry> restored) : RaftLog(Index(), Term(), std::move(restored)) {}

RaftLog::RaftLog(Index offset, Term offset_term, std::vector<Entry> restored)
    : entries_(std::move(restored)), offset_(offset), offset_term_(offset_term) {
  CORAFT_REQUIRE(offset.value() == 0 ? offset_term.value() == 0 : offset_term.value() >= 1,
                 "restored snapshot has a bad term", offset, offset_term);
  for (std::size_t k = 0; k < entries_.size(); ++k) {
    CORAFT_REQUIRE(entries_[k].index == offset + (k + 1),
                   "restored log is not contiguous after the snapshot", entries_[k].index, k);
    CORAFT_REQUIRE(entries_[k].term.value() >= 1, "restored entry has term 0", entries_[k].index);
    const Term before = k == 0 ? offset_term : entries_[k - 1].term;
    CORAFT_REQUIRE(entries_[k].term >= before, "restored log has a decreasing term",
                   entries_[k].index);
  }
  commit_ = offset;
  persisted_ = last_index();
  saved_ = last_index();
}

Term RaftLog::last_term() const noexcept {
  return entries_.empty() ? offset_term_ : entries_.back().term;
}

std::optional<Term> RaftLog::term_at(Index i) const noexcept {
  if (i == offset_) return offset_term_;
  if (i < offset_ || i > last_index()) return std::nullopt;
  return entries_[i - offset_ - 1].term;
}

bool RaftLog::matches(Index i, Term t) const noexcept {
  auto term = term_at(i);
  return term && *term == t;
}

const Entry& RaftLog::at(Index i) const {
  CORAFT_REQUIRE(i > offset_ && i <= last_index(), i, offset_, last_index());
  return entries_[i - offset_ - 1];
}

std::span<const Entry> RaftLog::slice(Index lo, Index hi) const {
  CORAFT_REQUIRE(lo > offset_ && hi <= last_index(), lo, hi, offset_, last_index());
  if (hi < lo) return {};
  return std::span<const Entry>(entries_).subspan(lo - offset_ - 1, hi - lo + 1);
}

bool RaftLog::candidate_up_to_date(Index last, Term term) const noexcept {
  return term > last_term() || (term == last_term() && last >= last_index());
}

Index RaftLog::last_index_with_term_at_most(Index upto, Term term) const noexcept {
  const Index hi = std::min(upto, last_index());
  if (hi <= offset_) return offset_;
  const auto end = entries_.begin() + static_cast<std::ptrdiff_t>(hi - offset_);
  // First entry (within [offset_+1, hi]) whose term exceeds `term`; the one before is ours.
  auto it = std::upper_bound(entries_.begin(), end, term,
                             [](Term t, const Entry& e) { return t < e.term; });
  return offset_ + static_cast<std::uint64_t>(it - entries_.begin());
}

void RaftLog::commit_to(Index i) {
  CORAFT_ASSERT(i >= commit_ && i <= last_index(), i, commit_, last_index());
  commit_ = i;
}

void RaftLog::append(Entry e) {
  CORAFT_ASSERT(e.index == last_index() + 1, e.index, last_index());
  CORAFT_ASSERT(e.term >= last_term() && e.term.value() >= 1, e.term, last_term());
  entries_.push_back(std::move(e));
}

void RaftLog::truncate_from(Index from) {
  CORAFT_ASSERT(from > commit_ && from > offset_ && from <= last_index(), from, commit_,
                last_index());
  entries_.resize(from - offset_ - 1);
  const Index kept = from - 1;
  persisted_ = std::min(persisted_, kept);
  saved_ = std::min(saved_, kept);
  for (Write& w : writes_) w.cap = std::min(w.cap, kept);
  truncate_pending_ = truncate_pending_ ? std::min(*truncate_pending_, from) : from;
}

void RaftLog::compact(Index upto) {
  CORAFT_ASSERT(upto >= offset_ && upto <= commit_ && upto <= persisted_, upto, offset_, commit_,
                persisted_);
  if (upto == offset_) return;
  offset_term_ = at(upto).term;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(upto - offset_));
  offset_ = upto;
}

bool RaftLog::restore(Index index, Term term) {
  CORAFT_ASSERT(index > commit_, index, commit_);
  if (index <= last_index() && matches(index, term)) {
    commit_ = index;
    persisted_ = std::max(persisted_, index);
    saved_ = std::max(saved_, index);
    compact(index);
    return true;
  }
  entries_.clear();
  offset_ = index;
  offset_term_ = term;
  commit_ = index;
  persisted_ = index;
  saved_ = index;
  for (Write& w : writes_) w.cap = std::min(w.cap, index);
  // The installed snapshot replaces every stored entry up to `index` (output.hpp step 2), so a
  // truncation pending below it is subsumed: only what lies above the snapshot goes.
  truncate_pending_ = index + 1;
  return false;
}

std::uint64_t RaftLog::take_unsaved(std::optional<Index>& truncate_from,
                                    std::vector<Entry>& entries, Term hard_term) {
  // A truncation above every entry handed out removed only entries storage never saw.
  truncate_from.reset();
  if (truncate_pending_ && *truncate_pending_ <= saved_ + 1) truncate_from = truncate_pending_;
  truncate_pending_.reset();
  if (saved_ < last_index()) {
    auto fresh = slice(saved_ + 1, last_index());
    entries.assign(fresh.begin(), fresh.end());
    saved_ = last_index();
  }
  const std::uint64_t id = next_write_++;
  writes_.push_back(Write{id, saved_, saved_, hard_term});
  return id;
}

bool RaftLog::persisted(std::uint64_t write) {
  CORAFT_REQUIRE(!writes_.empty() && write >= writes_.front().id && write <= writes_.back().id,
                 "persisted() names no write in flight", write);
  const auto match = writes_.begin() + static_cast<std::ptrdiff_t>(write - writes_.front().id);
  Index durable = persisted_;
  for (auto it = writes_.begin(); it != match + 1; ++it) {
    durable = std::max(durable, it->cap);
    durable_hard_term_ = std::max(durable_hard_term_, it->hard_term);
  }
  writes_.erase(writes_.begin(), match + 1);
  const bool grew = durable > persisted_;
  persisted_ = durable;
  return grew;
}

void RaftLog::check_invariants() const {
  CORAFT_ASSERT(offset_ <= commit_ && commit_ <= last_index(), offset_, commit_, last_index());
  CORAFT_ASSERT(offset_.value() == 0 || offset_term_.value() >= 1, offset_, offset_term_);
  CORAFT_ASSERT(persisted_ <= saved_ && saved_ <= last_index(), persisted_, saved_, last_index());
  if (!entries_.empty()) {
    CORAFT_ASSERT(entries_.front().index == offset_ + 1, entries_.front().index, offset_);
    CORAFT_ASSERT(entries_.back().index == last_index(), entries_.back().index, last_index());
  }
  for (std::size_t k = 0; k < writes_.size(); ++k) {
    const Write& w = writes_[k];
    CORAFT_ASSERT(w.cap <= w.last && w.id == writes_.front().id + k, w.cap, w.last, w.id);
  }
}

}  // namespace coraft::core
