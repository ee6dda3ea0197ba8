#include <coraft/types.hpp>

#include <doctest/doctest.h>

#include <type_traits>
#include <unordered_set>

using coraft::Index;
using coraft::NodeId;
using coraft::Term;

template <class T>
concept Incrementable = requires(T t) {
  ++t;
};
template <class T>
concept Addable = requires(T t) {
  t + 1u;
};

TEST_CASE("strong ids do not convert to each other or from bare integers") {
  static_assert(!std::is_convertible_v<std::uint64_t, Term>);
  static_assert(!std::is_convertible_v<Term, Index>);
  static_assert(!std::is_convertible_v<Index, NodeId>);
  static_assert(!std::is_convertible_v<Term, std::uint64_t>);
  static_assert(std::is_trivially_copyable_v<Index>);
  static_assert(sizeof(Index) == sizeof(std::uint64_t));
  CHECK(Term(7).value() == 7);
}

TEST_CASE("terms and indexes count and compare") {
  Index i(10);
  ++i;
  CHECK(i == Index(11));
  CHECK(i + 4 == Index(15));
  CHECK(i - 1 == Index(10));
  CHECK(Index(15) - Index(11) == 4u);
  i += 5;
  CHECK(i == Index(16));
  --i;
  CHECK(i == Index(15));
  CHECK(Term(2) < Term(3));
  CHECK(Term(3) >= Term(3));
  CHECK(Term() == Term(0));
}

TEST_CASE("node ids are values without arithmetic and zero means none") {
  CHECK(coraft::no_node == NodeId(0));
  CHECK(NodeId(3) != NodeId(4));
  static_assert(!Incrementable<NodeId> && !Addable<NodeId>);
  static_assert(Incrementable<Index> && Addable<Index> && Addable<Term>);
}

TEST_CASE("strong ids hash by value") {
  std::unordered_set<NodeId> ids{NodeId(1), NodeId(2), NodeId(1)};
  CHECK(ids.size() == 2);
  CHECK(ids.count(NodeId(2)) == 1);
}
