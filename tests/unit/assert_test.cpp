#include <coraft/assert.hpp>
#include <coraft/result.hpp>

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <functional>
#include <string>

namespace {

struct Death {
  bool aborted = false;
  std::string stderr_text;
};

// Runs `fn` in a child process and captures how it ended and what it wrote to stderr.
Death run_in_child(const std::function<void()>& fn) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The test runner's crash handlers must not report the child's intended abort.
    std::signal(SIGABRT, SIG_DFL);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    fn();
    ::_exit(0);
  }
  ::close(fds[1]);
  Death d;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
    d.stderr_text.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  d.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  return d;
}

}  // namespace

TEST_CASE("a passing assertion does nothing") {
  auto d = run_in_child([] {
    int x = 3;
    CORAFT_ASSERT(x == 3, x);
    CORAFT_REQUIRE(x > 0);
  });
  CHECK_FALSE(d.aborted);
  CHECK(d.stderr_text.empty());
}

TEST_CASE("a failed assertion aborts and prints its condition and context values") {
  auto d = run_in_child([] {
    coraft::Index match_index(7);
    coraft::Index next_index(5);
    CORAFT_ASSERT(match_index < next_index, "progress out of order", match_index, next_index);
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("assertion failed: match_index < next_index") != std::string::npos);
  CHECK(d.stderr_text.find("assert_test.cpp:") != std::string::npos);
  CHECK(d.stderr_text.find("progress out of order") != std::string::npos);
  CHECK(d.stderr_text.find("match_index = 7") != std::string::npos);
  CHECK(d.stderr_text.find("next_index = 5") != std::string::npos);
}

TEST_CASE("a failed requirement names the caller's broken precondition") {
  auto d = run_in_child([] {
    std::size_t offset = 12;
    CORAFT_REQUIRE(offset < 10, offset, std::string("tail"));
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("precondition violated: offset < 10") != std::string::npos);
  CHECK(d.stderr_text.find("offset = 12") != std::string::npos);
  CHECK(d.stderr_text.find("std::string(\"tail\") = tail") != std::string::npos);
}

TEST_CASE("assertions stay active whatever NDEBUG says") {
#ifdef NDEBUG
  const bool release = true;
#else
  const bool release = false;
#endif
  auto d = run_in_child([] { CORAFT_ASSERT(1 + 1 == 3); });
  CHECK(d.aborted);
  INFO("release build: " << release);
}

TEST_CASE("taking the value of a failed Result is a caller's bug") {
  auto d = run_in_child([] {
    coraft::Result<int> r = coraft::Error::not_leader(coraft::NodeId(2));
    (void)r.value();
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("not the leader (leader is node 2)") != std::string::npos);
}
