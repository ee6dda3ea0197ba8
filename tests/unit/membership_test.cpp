#include <coraft/membership.hpp>

#include <doctest/doctest.h>

#include <vector>

using coraft::Configuration;
using coraft::NodeId;

namespace {
std::vector<NodeId> ids(std::initializer_list<std::uint64_t> v) {
  std::vector<NodeId> out;
  for (auto x : v) out.emplace_back(x);
  return out;
}
}  // namespace

TEST_CASE("a configuration sorts and deduplicates its members") {
  auto c = Configuration::make(ids({3, 1, 2, 1}), {}, ids({5}));
  REQUIRE(c.ok());
  CHECK(c->voters == ids({1, 2, 3}));
  CHECK(c->is_voter(NodeId(2)));
  CHECK_FALSE(c->is_voter(NodeId(5)));
  CHECK(c->is_learner(NodeId(5)));
  CHECK(c->contains(NodeId(5)));
  CHECK_FALSE(c->joint());
  CHECK(c->members() == ids({1, 2, 3, 5}));
}

TEST_CASE("a joint configuration counts voters of both sets") {
  auto c = Configuration::make(ids({1, 2, 4}), ids({1, 2, 3}));
  REQUIRE(c.ok());
  CHECK(c->joint());
  CHECK(c->is_voter(NodeId(3)));
  CHECK(c->is_voter(NodeId(4)));
  CHECK(c->members() == ids({1, 2, 3, 4}));
}

TEST_CASE("a node cannot be both voter and learner, and node 0 is not a member") {
  CHECK(Configuration::make(ids({1, 2}), {}, ids({2})).error().is(coraft::Errc::invalid_argument));
  CHECK(Configuration::make(ids({0, 1})).error().is(coraft::Errc::invalid_argument));
}

TEST_CASE("a configuration survives encoding and decoding") {
  auto c = Configuration::make(ids({1, 2, 4}), ids({1, 2, 3}), ids({9, 7}));
  REQUIRE(c.ok());
  auto bytes = coraft::encode_configuration(*c);
  auto back = coraft::decode_configuration(bytes.span());
  REQUIRE(back.ok());
  CHECK(*back == *c);
}

TEST_CASE("malformed configuration bytes are rejected, never over-read") {
  auto c = Configuration::make(ids({1, 2, 3}));
  auto bytes = coraft::encode_configuration(*c);
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    CHECK_FALSE(coraft::decode_configuration(bytes.span().first(cut)).ok());
  }
  std::vector<std::byte> bad(bytes.span().begin(), bytes.span().end());
  bad[0] = std::byte{99};
  CHECK(coraft::decode_configuration(bad).error().is(coraft::Errc::protocol_error));
  bad[0] = std::byte{1};
  bad[1] = std::byte{0xff};  // claims 255+ voters with no bytes behind them
  bad[2] = std::byte{0xff};
  CHECK_FALSE(coraft::decode_configuration(bad).ok());
  bad.assign(bytes.span().begin(), bytes.span().end());
  bad.push_back(std::byte{0});
  CHECK_FALSE(coraft::decode_configuration(bad).ok());
}

TEST_CASE("a configuration's member addresses survive encoding, and only members keep one") {
  auto c = Configuration::make(ids({1, 2}), {}, ids({3}));
  REQUIRE(c.ok());
  c->set_addresses({{coraft::NodeId(2), "10.0.0.2:7000"},
                    {coraft::NodeId(9), "not-a-member:1"},
                    {coraft::NodeId(1), "old:1"},
                    {coraft::NodeId(1), "h1:7000"},
                    {coraft::NodeId(3), "[::1]:7003"}});
  REQUIRE(c->addresses.size() == 3);
  CHECK(c->addresses[0] == coraft::MemberAddress{coraft::NodeId(1), "h1:7000"});
  CHECK(c->addresses[2].id == coraft::NodeId(3));
  auto bytes = coraft::encode_configuration(*c);
  CHECK(static_cast<int>(bytes[0]) == 2);
  auto back = coraft::decode_configuration(bytes.span());
  REQUIRE(back.ok());
  CHECK(*back == *c);
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    CHECK_FALSE(coraft::decode_configuration(bytes.span().first(cut)).ok());
  }
  // Without addresses the encoding stays version 1, byte for byte.
  auto plain = Configuration::make(ids({1, 2}), {}, ids({3}));
  CHECK(static_cast<int>(coraft::encode_configuration(*plain)[0]) == 1);
}
