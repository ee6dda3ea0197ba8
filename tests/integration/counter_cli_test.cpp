// coraft-counter's command line: usage and refusals, and one server's life from bootstrap to a
// graceful stop, driven through the client commands and the metrics endpoint.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include "integration/process_util.hpp"

namespace {

using namespace std::chrono_literals;

using coraft::test::free_port;
using coraft::test::wait_for_exit;

coraft::test::Ran run(const std::string& args) {
  return coraft::test::run_command(std::string(CORAFT_COUNTER_BIN) + " " + args + " 2>&1");
}

struct TempDir {
  std::string path = std::filesystem::temp_directory_path().string() + "/coraft-counter-cli-" +
                     std::to_string(::getpid());
  TempDir() {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all = {CORAFT_COUNTER_BIN};
  all.insert(all.end(), args.begin(), args.end());
  return coraft::test::spawn(all, log);
}

std::string http_get(std::uint16_t port) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  std::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return {};
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(s, asio::buffer(request), ec);
  std::string out;
  char buf[4096];
  for (;;) {
    const std::size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

}  // namespace

TEST_CASE("coraft-counter prints usage for every command and documents its exit codes") {
  auto top = run("--help");
  CHECK(top.status == 0);
  for (const char* sub : {"serve", "incr", "get", "status", "members", "transfer", "local-cluster"})
    CHECK(top.out.find(sub) != std::string::npos);
  for (const char* sub : {"serve", "incr", "get", "status", "transfer", "local-cluster",
                          "members list", "members add-voter", "members remove"}) {
    CAPTURE(sub);
    auto r = run(std::string(sub) + " --help");
    CHECK(r.status == 0);
  }
  auto incr = run("incr --help");
  CHECK(incr.out.find("3 outcome unknown") != std::string::npos);
  CHECK(incr.out.find("--by") != std::string::npos);
}

TEST_CASE("coraft-counter refuses bad flags with exit 2 and one line naming the command") {
  for (const char* bad : {"incr --bogus", "incr", "serve --id 0 --data /tmp/x",
                          "local-cluster --nodes 4 --dir /tmp/x", "get --cluster a --timeout 0",
                          "members add-voter --cluster a --id 4"}) {
    CAPTURE(bad);
    auto r = run(bad);
    CHECK(r.status == 2);
    CHECK(r.out.rfind("coraft-counter", 0) == 0);
  }
  auto peer = run("serve --id 1 --data /tmp/coraft-counter-unused --peer-listen nonsense");
  CHECK(peer.status == 2);
  CHECK(peer.out.find("--peer-listen") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists("/tmp/coraft-counter-unused"));
}

TEST_CASE("a server refuses a data directory it cannot use, touching nothing") {
  TempDir dir;
  const std::string file = dir.path + "/not-a-dir";
  std::ofstream(file) << "keep me";
  auto r = run("serve --id 1 --data " + file + " --bootstrap");
  CHECK(r.status == 1);
  CHECK(r.out.rfind("coraft-counter serve: ", 0) == 0);
  std::ifstream in(file);
  std::string text;
  std::getline(in, text);
  CHECK(text == "keep me");
  // A directory holding something else than a server's state is not bootstrapped over.
  std::filesystem::create_directories(dir.path + "/other");
  std::ofstream(dir.path + "/other/notes") << "x";
  auto other = run("serve --id 1 --data " + dir.path + "/other --bootstrap");
  CHECK(other.status == 1);
  CHECK(std::filesystem::exists(dir.path + "/other/notes"));
}

TEST_CASE("a client with no server to reach gives up within its timeout, definitely not done") {
  const auto start = std::chrono::steady_clock::now();
  auto r = run("incr --cluster 127.0.0.1:" + std::to_string(free_port()) + " --timeout 0.3");
  CHECK(r.status == 1);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE(
    "one server: bootstrap, increments, reads, status, members, metrics and a graceful stop") {
  TempDir dir;
  const std::string client = "127.0.0.1:" + std::to_string(free_port());
  const std::string peer = "127.0.0.1:" + std::to_string(free_port());
  const std::uint16_t metrics = free_port();
  const pid_t pid =
      spawn({"serve", "--id", "1", "--data", dir.path + "/n1", "--peer-listen", peer,
             "--client-listen", client, "--metrics", "127.0.0.1:" + std::to_string(metrics),
             "--tick-ms", "10", "--bootstrap"},
            dir.path + "/server.log");
  REQUIRE(pid > 0);
  const std::string cluster = " --cluster " + client + " --timeout 10";
  auto first = run("incr --by 5" + cluster);
  CHECK(first.status == 0);
  CHECK(first.out == "5\n");
  CHECK(run("incr --by -2" + cluster).out == "3\n");
  CHECK(run("get" + cluster).out == "3\n");
  CHECK(run("get --stale" + cluster).out == "3\n");
  auto status = run("status" + cluster);
  CHECK(status.status == 0);
  CHECK(status.out.find("leader") != std::string::npos);
  auto json = run("status --json" + cluster);
  CHECK(json.out.find("\"role\":\"leader\"") != std::string::npos);
  CHECK(json.out.find("\"value\":3") != std::string::npos);
  auto members = run("members list" + cluster);
  CHECK(members.out.find("\"voters\":[1]") != std::string::npos);
  // Removing the only voter is refused, definitely.
  auto remove = run("members remove --id 1" + cluster);
  CHECK(remove.status == 1);
  const std::string text = http_get(metrics);
  CHECK(text.find("200 OK") != std::string::npos);
  CHECK(text.find("coraft_") != std::string::npos);

  ::kill(pid, SIGTERM);
  CHECK(wait_for_exit(pid, 20s) == 0);
  // Started again (without --bootstrap, as a restart should be), it keeps its value.
  const pid_t again = spawn({"serve", "--id", "1", "--data", dir.path + "/n1", "--peer-listen",
                             peer, "--client-listen", client, "--tick-ms", "10"},
                            dir.path + "/server.log");
  CHECK(run("get" + cluster).out == "3\n");
  ::kill(again, SIGINT);
  CHECK(wait_for_exit(again, 20s) == 0);
}
