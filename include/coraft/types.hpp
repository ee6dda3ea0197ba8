// Strong identifier types shared by every coraft module.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace coraft {

// A 64-bit value that does not convert to or from other strong values or bare integers.
// Tag selects the meaning; `Counting` enables the arithmetic a log position or term needs.
template <class Tag, bool Counting>
class Strong {
 public:
  constexpr Strong() noexcept = default;
  constexpr explicit Strong(std::uint64_t v) noexcept : v_(v) {}

  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return v_; }

  friend constexpr bool operator==(Strong, Strong) noexcept = default;
  friend constexpr auto operator<=>(Strong, Strong) noexcept = default;

  constexpr Strong& operator++() noexcept requires Counting {
    ++v_;
    return *this;
  }
  constexpr Strong& operator--() noexcept requires Counting {
    --v_;
    return *this;
  }
  constexpr Strong& operator+=(std::uint64_t n) noexcept requires Counting {
    v_ += n;
    return *this;
  }
  friend constexpr Strong operator+(Strong a, std::uint64_t n) noexcept requires Counting {
    return Strong(a.v_ + n);
  }
  friend constexpr Strong operator-(Strong a, std::uint64_t n) noexcept requires Counting {
    return Strong(a.v_ - n);
  }
  // The distance between two positions. Precondition: a >= b.
  friend constexpr std::uint64_t operator-(Strong a, Strong b) noexcept requires Counting {
    return a.v_ - b.v_;
  }

 private:
  std::uint64_t v_ = 0;
};

// A Raft term. Term 0 exists only before the first election.
using Term = Strong<struct TermTag, true>;
// A log position. Index 0 is the empty log's "last index"; the first entry is at index 1.
using Index = Strong<struct IndexTag, true>;
// A server's identity within a cluster. NodeId 0 means "none" (no vote, no known leader).
using NodeId = Strong<struct NodeIdTag, false>;

inline constexpr NodeId no_node{};

}  // namespace coraft

template <class Tag, bool Counting>
struct std::hash<coraft::Strong<Tag, Counting>> {
  std::size_t operator()(coraft::Strong<Tag, Counting> s) const noexcept {
    return std::hash<std::uint64_t>{}(s.value());
  }
};
