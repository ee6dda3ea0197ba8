// A program built against the installed coraft package.
#include <coraft/coraft.hpp>

#include <cstdio>

int main() {
  coraft::Bytes b = coraft::Bytes::copy_of(std::string_view("payload"));
  coraft::Result<coraft::Index> r = coraft::Index(41) + 1;
  coraft::Result<int> bad = coraft::Error::not_leader(coraft::NodeId(2));
  if (b.slice(3).chars() != "load" || r.value() != coraft::Index(42) || bad.ok()) return 1;
  std::printf("coraft %.*s ok\n", static_cast<int>(coraft::version().size()),
              coraft::version().data());
  return 0;
}
