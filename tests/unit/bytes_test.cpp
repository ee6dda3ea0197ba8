#include <coraft/bytes.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using coraft::Bytes;

TEST_CASE("an empty Bytes has no data and equals another empty one") {
  Bytes b;
  CHECK(b.empty());
  CHECK(b.size() == 0);
  CHECK(b == Bytes::copy_of(std::string_view()));
  CHECK(b.owner_use_count() == 0);
}

TEST_CASE("copy_of copies once and the copy outlives the source") {
  std::string source = "hello raft";
  Bytes b = Bytes::copy_of(source);
  CHECK(b.data() != reinterpret_cast<const std::byte*>(source.data()));
  source.assign("XXXXXXXXXX");
  CHECK(b.chars() == "hello raft");
}

TEST_CASE("copying and slicing share memory instead of copying bytes") {
  Bytes b = Bytes::copy_of(std::string_view("0123456789"));
  Bytes copy = b;
  Bytes mid = b.slice(2, 5);
  Bytes tail = b.slice(7);
  CHECK(copy.data() == b.data());
  CHECK(mid.data() == b.data() + 2);
  CHECK(mid.chars() == "23456");
  CHECK(tail.chars() == "789");
  CHECK(mid.shares_owner_with(b));
  CHECK(b.owner_use_count() == 4);
  CHECK(b.slice(10).empty());
  CHECK(mid.slice(1, 2).chars() == "34");
}

TEST_CASE("wrap keeps a foreign owner alive without copying its memory") {
  auto frame = std::make_shared<std::vector<std::byte>>(16, std::byte{0x5a});
  const std::byte* raw = frame->data();
  Bytes payload = Bytes::wrap(frame, std::span<const std::byte>(raw + 4, 8));
  std::weak_ptr<std::vector<std::byte>> watch = frame;
  frame.reset();
  CHECK_FALSE(watch.expired());  // the view keeps the frame alive
  CHECK(payload.data() == raw + 4);
  CHECK(payload.size() == 8);
  CHECK(payload[0] == std::byte{0x5a});
  payload = Bytes();
  CHECK(watch.expired());  // and releases it with the last view
}

TEST_CASE("adopt takes over a container without copying its buffer") {
  std::string s(1000, 'x');
  const char* before = s.data();
  Bytes b = Bytes::adopt(std::move(s));
  CHECK(b.size() == 1000);
  CHECK(reinterpret_cast<const char*>(b.data()) == before);
}

TEST_CASE("equality compares contents, not identity") {
  Bytes a = Bytes::copy_of(std::string_view("abc"));
  Bytes b = Bytes::copy_of(std::string_view("abc"));
  Bytes c = Bytes::copy_of(std::string_view("abd"));
  CHECK(a == b);
  CHECK_FALSE(a.shares_owner_with(b));
  CHECK_FALSE(a == c);
  CHECK_FALSE(a == a.slice(0, 2));
}
