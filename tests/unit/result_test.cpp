#include <coraft/result.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

using coraft::Errc;
using coraft::Error;
using coraft::NodeId;
using coraft::Result;

namespace {
Result<int> half(int x) {
  if (x % 2 != 0) return Error(Errc::invalid_argument, "odd input " + std::to_string(x));
  return x / 2;
}
}  // namespace

TEST_CASE("a Result holds either a value or an error") {
  auto good = half(8);
  REQUIRE(good.ok());
  CHECK(*good == 4);
  CHECK(good.value_or(-1) == 4);

  auto bad = half(3);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().is(Errc::invalid_argument));
  CHECK(bad.error().detail == "odd input 3");
  CHECK(bad.value_or(-1) == -1);
}

TEST_CASE("not_leader carries the leader hint and says it") {
  Result<std::string> r = Error::not_leader(NodeId(3));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().is(Errc::not_leader));
  CHECK(r.error().leader_hint == NodeId(3));
  CHECK(r.error().message() == "not the leader (leader is node 3)");
  CHECK(Error::not_leader(coraft::no_node).message() == "not the leader (leader unknown)");
}

TEST_CASE("coraft errors live in their own error category") {
  std::error_code ec = Errc::overloaded;
  CHECK(ec.category() == coraft::error_category());
  CHECK(std::string(ec.category().name()) == "coraft");
  CHECK(ec.message().find("overloaded") == 0);
  CHECK(ec != std::make_error_code(std::errc::invalid_argument));
  for (Errc e : {Errc::not_leader, Errc::overloaded, Errc::too_large, Errc::shutting_down,
                 Errc::timeout, Errc::storage_io, Errc::storage_corrupt, Errc::disk_full,
                 Errc::protocol_error, Errc::peer_rejected}) {
    CHECK(coraft::make_error_code(e).message().find("unknown") == std::string::npos);
  }
}

TEST_CASE("an error detail is part of the message") {
  Error e(Errc::storage_corrupt, "00000001.log offset 4096: bad checksum");
  CHECK(e.message() == "storage is corrupt: 00000001.log offset 4096: bad checksum");
}

TEST_CASE("Result moves its value out without copying") {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(42);
  std::unique_ptr<int> p = std::move(r).value();
  REQUIRE(p);
  CHECK(*p == 42);
}

TEST_CASE("Result<void> is success by default and can carry an error") {
  Result<void> ok;
  CHECK(ok.ok());
  Result<void> bad = Errc::disk_full;
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().is(Errc::disk_full));
}
