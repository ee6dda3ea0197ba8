// coraft-inspect against real data directories, healthy and damaged.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <cstdio>

#include "storage/hard_state.hpp"
#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

struct Outcome {
  int exit_code = -1;
  std::string output;
};

Outcome inspect(const std::string& args) {
  std::string cmd = std::string(CORAFT_INSPECT_PATH) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  Outcome out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.output.append(buf, n);
  int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

void write_bytes_new(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs("x", f);
  std::fclose(f);
}

void build(const std::string& dir) {
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), small_options(dir));
  REQUIRE(log.ok());
  for (std::uint64_t i = 1; i <= 200; i += 10) {
    REQUIRE(run(io, (*log)->append(make_entries(i, i + 9, 3, 1000))).ok());
  }
  auto hs = HardStateFile::open(io.get_executor(), dir);
  REQUIRE(hs.ok());
  REQUIRE(run(io, hs->save({Term(3), NodeId(2)})).ok());
}

}  // namespace

TEST_CASE("coraft-inspect verify passes a healthy directory and lists its log") {
  TempDir dir;
  build(dir.path());
  auto v = inspect("verify " + dir.path());
  CHECK(v.exit_code == 0);
  CHECK(v.output.find("200 records verified") != std::string::npos);
  CHECK(v.output.find("hard state: term 3, voted for 2") != std::string::npos);
  auto l = inspect("log " + dir.path());
  CHECK(l.exit_code == 0);
  CHECK(l.output.find("index 200  term 3  normal  1000 bytes") != std::string::npos);
  CHECK(l.output.find("payload crc ") != std::string::npos);
  CHECK(l.output.find("payload crc ?") == std::string::npos);
}

TEST_CASE("coraft-inspect reads a node's data directory, whose log is one level down") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/log");
  build(dir.path() + "/log");
  auto v = inspect("verify " + dir.path());
  CHECK(v.exit_code == 0);
  CHECK(v.output.find("200 records verified") != std::string::npos);
  CHECK(v.output.find("hard state: term 3, voted for 2") != std::string::npos);
  auto l = inspect("log " + dir.path());
  CHECK(l.exit_code == 0);
  CHECK(l.output.find("index 200  term 3  normal  1000 bytes") != std::string::npos);
}

TEST_CASE("coraft-inspect verify exits non-zero naming the file and offset of damage") {
  TempDir dir;
  build(dir.path());
  std::string seg;
  for (const auto& n : files_in(dir.path())) {
    if (n.rfind("open-", 0) != 0) seg = dir.path() + "/" + n;
  }
  REQUIRE_FALSE(seg.empty());
  flip_byte(seg, 32 + 2 * 1032 + 100);
  auto v = inspect("verify " + dir.path());
  CHECK(v.exit_code == 1);
  CHECK(v.output.find(seg + " offset " + std::to_string(32 + 2 * 1032)) != std::string::npos);
}

TEST_CASE("coraft-inspect reports damaged hard state") {
  TempDir dir;
  build(dir.path());
  flip_byte(dir.path() + "/hardstate", 20);
  flip_byte(dir.path() + "/hardstate", 512 + 20);
  auto v = inspect("verify " + dir.path());
  CHECK(v.exit_code == 1);
  CHECK(v.output.find(dir.path() + "/hardstate offset 0") != std::string::npos);
}

TEST_CASE("coraft-inspect refuses bad arguments with a usage message") {
  auto none = inspect("");
  CHECK(none.exit_code == 2);
  CHECK(none.output.find("usage") != std::string::npos);
  auto unknown = inspect("frobnicate /tmp");
  CHECK(unknown.exit_code == 2);
  auto missing = inspect("verify /nonexistent/coraft-dir");
  CHECK(missing.exit_code == 2);
  CHECK(missing.output.find("/nonexistent/coraft-dir does not exist") != std::string::npos);
  TempDir dir;
  std::string file = dir.path() + "/plain";
  write_bytes_new(file);
  auto not_dir = inspect("verify " + file);
  CHECK(not_dir.exit_code == 2);
  CHECK(not_dir.output.find("not a directory") != std::string::npos);
}

TEST_CASE("coraft-inspect log says so when a directory holds no log") {
  TempDir dir;
  auto l = inspect("log " + dir.path());
  CHECK(l.exit_code == 0);
  CHECK(l.output.find("no log segments in " + dir.path()) != std::string::npos);
}

TEST_CASE("coraft-inspect verify exits non-zero for a damaged hard-state slot beside a valid one") {
  TempDir dir;
  build(dir.path());
  {
    asio::io_context io;
    auto hs = HardStateFile::open(io.get_executor(), dir.path());
    REQUIRE(hs.ok());
    REQUIRE(run(io, hs->save({Term(3), NodeId(2)})).ok());  // the second save: slot 512
  }
  flip_byte(dir.path() + "/hardstate", 512 + 20);
  auto v = inspect("verify " + dir.path());
  CHECK(v.exit_code == 1);
  CHECK(v.output.find("damaged slot at " + dir.path() + "/hardstate offset 512") !=
        std::string::npos);
}

TEST_CASE("coraft-inspect reports a file it cannot read as an I/O error, not as corruption") {
  TempDir dir;
  build(dir.path());
  // A plain file where the snapshot directory belongs cannot be listed, whoever runs the test.
  write_bytes_new(dir.path() + "/snapshots");
  auto v = inspect("verify " + dir.path());
  CHECK(v.exit_code == 3);
  CHECK(v.output.find("cannot read") != std::string::npos);
  CHECK(v.output.find("corrupt") == std::string::npos);
}
