// The in-memory Raft log of one server, with the bookkeeping that connects it to durable
// storage: which entries still have to be handed out for writing, and which prefix is durable.
#pragma once

#include <deque>
#include <optional>
#include <span>
#include <vector>

#include <coraft/entry.hpp>
#include <coraft/types.hpp>

namespace coraft::core {

class RaftLog {
 public:
  // `restored` is the durable log read back at start: contiguous from index 1, terms
  // non-decreasing. It counts as persisted and as already handed out.
  explicit RaftLog(std::vector<Entry> restored);
  // A log restored after a snapshot covering every entry up to (offset, offset_term): `restored`
  // is contiguous from offset + 1. Everything up to the offset counts as committed.
  RaftLog(Index offset, Term offset_term, std::vector<Entry> restored);

  // The index before the first entry held in memory (0 until snapshots compact the log).
  // Invariant: offset() <= commit_index(); the entry at the offset is covered by a snapshot.
  [[nodiscard]] Index offset() const noexcept { return offset_; }
  [[nodiscard]] Index last_index() const noexcept { return offset_ + entries_.size(); }
  [[nodiscard]] Term last_term() const noexcept;
  // The term at `i`: the snapshot's term at the offset (Term 0 at index 0), nullopt outside the
  // log.
  [[nodiscard]] std::optional<Term> term_at(Index i) const noexcept;
  [[nodiscard]] bool matches(Index i, Term t) const noexcept;
  // Precondition: offset() < i <= last_index().
  [[nodiscard]] const Entry& at(Index i) const;
  // Entries [lo, hi]. Precondition: offset() < lo, hi <= last_index().
  [[nodiscard]] std::span<const Entry> slice(Index lo, Index hi) const;
  // True when a log ending at (last, term) is at least as up to date as this one (§3.6.1).
  [[nodiscard]] bool candidate_up_to_date(Index last, Term term) const noexcept;
  // The largest index <= `upto` whose term is <= `term`, or the offset if none. Terms never
  // decrease along a log, so this is a binary search. Used for conflict hints (§3.5).
  [[nodiscard]] Index last_index_with_term_at_most(Index upto, Term term) const noexcept;

  [[nodiscard]] Index commit_index() const noexcept { return commit_; }
  // Precondition: commit_ <= i <= last_index().
  void commit_to(Index i);

  // Appends at last_index() + 1. Precondition: e.index == last_index() + 1, e.term >= last_term().
  void append(Entry e);
  // Removes every entry at index >= `from`. Precondition: commit_index() < from <= last_index().
  void truncate_from(Index from);

  // ---- Snapshots (thesis §5.1) ----
  // Drops the entries up to `upto`, which a snapshot covers. Precondition: offset() <= upto <=
  // min(commit_index(), persisted_index()).
  void compact(Index upto);
  // Makes a snapshot ending at (index, term) the base of the log. If the log holds that entry,
  // the entries after it stay (§5.3: a follower keeps what follows a snapshot it already
  // covers) and the call returns true. Otherwise the whole log is discarded, a truncation from
  // index + 1 is recorded for storage, and the call returns false. Either way everything up to
  // `index` counts as committed and durable (the snapshot is). Precondition: index >
  // commit_index().
  bool restore(Index index, Term term);

  // ---- Durability bookkeeping (see output.hpp) ----
  // Entries appended or a truncation made since the last take_unsaved().
  [[nodiscard]] bool has_unsaved() const noexcept {
    return truncate_pending_.has_value() || saved_ < last_index();
  }
  // Moves out the suffix to truncate and the entries to write, and records one write of the
  // caller's output, numbered so that persisted() can name it. `hard_term` is the term of the
  // hard state handed out with or before this write. The truncation handed out always starts
  // at or below the first entry handed out; one that only removed entries never handed out is
  // dropped. Returns the write's number: 1 for the first, then consecutive.
  [[nodiscard]] std::uint64_t take_unsaved(std::optional<Index>& truncate_from,
                                           std::vector<Entry>& entries, Term hard_term);
  // The write numbered `write` and every earlier one are durable. Returns true when the
  // durable prefix grew. Precondition: that write was handed out and not yet acknowledged.
  bool persisted(std::uint64_t write);
  // Invariant: every entry up to this index is durable and equal to the entry in memory.
  [[nodiscard]] Index persisted_index() const noexcept { return persisted_; }
  // The newest hard-state term known durable through an acknowledged write.
  [[nodiscard]] Term durable_hard_term() const noexcept { return durable_hard_term_; }
  // Writes handed out and not yet acknowledged.
  [[nodiscard]] std::size_t writes_in_flight() const noexcept { return writes_.size(); }

  // Asserts the invariants below; cost is O(1) plus the writes in flight.
  void check_invariants() const;

 private:
  struct Write {
    std::uint64_t id;
    Index last;
    // How much of this write is still the log in memory: later truncations lower it.
    Index cap;
    Term hard_term;
  };

  // Invariant: entries_[k].index == offset_ + 1 + k, terms non-decreasing.
  std::vector<Entry> entries_;
  Index offset_;
  Term offset_term_;
  // Invariant: commit_ <= last_index().
  Index commit_;
  // Invariant: persisted_ <= saved_ <= last_index().
  Index persisted_;
  // The last index handed out for writing.
  Index saved_;
  // The lowest truncation since the last take_unsaved(), if any.
  std::optional<Index> truncate_pending_;
  // Invariant: in hand-out order, ids consecutive; each cap <= its last.
  std::deque<Write> writes_;
  std::uint64_t next_write_ = 1;
  Term durable_hard_term_;
};

}  // namespace coraft::core
