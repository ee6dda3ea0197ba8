// Crash tests: a child process appends batches and reports each durable acknowledgement over a
// pipe; the parent SIGKILLs it at a random moment, reopens the log and checks that every
// acknowledged entry is there with the right bytes and that the log has no gap. The same for
// hard-state saves: the reopened state is the last acknowledged save or the one after it.
//
//   CORAFT_CRASH_CYCLES=N   cycles per run (default 200)
//   CORAFT_CRASH_SEED=S     reproduce a run (the seed is printed on failure)
//   CORAFT_STORAGE_BACKEND=thread|uring   the disk path under test
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include "storage/hard_state.hpp"
#include "storage/segmented_log.hpp"
#include "storage_test_util.hpp"

using namespace coraft;
using namespace coraft::storage;
using namespace coraft::storage::test;

namespace {

constexpr int appenders = 4;
constexpr std::uint64_t kill_delay_us_max = 40000;
// Most kills wait for the child's first acknowledgement, so that they land while it appends
// whatever the build's speed (sanitizers slow start-up by an order of magnitude); one in
// `early_kill_one_in` lands at any moment from the fork on, recovery included.
constexpr std::uint64_t early_kill_one_in = 8;
constexpr int first_ack_wait_ms_max = 10000;
constexpr std::uint64_t keep_entries = 1000;
constexpr std::uint64_t compact_above_entries = 4000;

std::size_t size_of(std::uint64_t index) {
  return (index * 2654435761u) % 3000;
}

LogOptions crash_options(const std::string& dir, std::uint64_t cycle) {
  LogOptions o;
  o.dir = dir;
  o.segment_bytes = 256 << 10;
  o.entry_bytes_max = 4 << 10;
  o.batch_bytes_max = 64 << 10;
  o.cache_bytes_max = 0;
  o.prepare = cycle % 2 ? SegmentPrepare::fallocate : SegmentPrepare::prewrite;
  // Every batch buffered, a mix of O_DIRECT and buffered batches, or nearly all O_DIRECT.
  constexpr std::uint32_t direct_choices[] = {0, 16 << 10, 64 << 10};
  o.direct_bytes_max = direct_choices[cycle % 3];
  o.direct_sync = (cycle / 3) % 2 ? Sync::fdatasync : Sync::dsync;
  return o;
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// The child: appends forever with several concurrent appenders, writing the last index of each
// acknowledged append to `ack_fd`.
[[noreturn]] void child_main(const std::string& dir, std::uint64_t cycle, int ack_fd,
                             std::uint64_t seed) {
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), crash_options(dir, cycle));
  if (!log) _exit(3);
  SegmentedLog& l = **log;
  std::uint64_t next = l.last_index().value() + 1;
  std::mt19937_64 rng(seed);
  auto appender = [&]() -> asio::awaitable<void> {
    for (;;) {
      std::uint64_t n = 1 + rng() % 16;
      std::vector<Entry> es;
      for (std::uint64_t i = next; i < next + n; ++i) es.push_back(make_entry(i, 1, size_of(i)));
      next += n;
      std::uint64_t last = next - 1;
      auto r = co_await l.append(std::move(es));
      if (!r) _exit(4);
      if (::write(ack_fd, &last, sizeof last) != sizeof last) _exit(5);
    }
  };
  for (int a = 0; a < appenders; ++a) asio::co_spawn(io, appender(), asio::detached);
  io.run();
  _exit(6);
}

NodeId vote_for(std::uint64_t term) {
  return NodeId(term % 7);
}

// The child: saves hard states with increasing terms, writing each acknowledged term to `ack_fd`.
[[noreturn]] void hard_state_child_main(const std::string& dir, std::uint64_t, int ack_fd,
                                        std::uint64_t) {
  asio::io_context io;
  auto hs = HardStateFile::open(io.get_executor(), dir);
  if (!hs) _exit(3);
  auto saver = [&]() -> asio::awaitable<void> {
    for (std::uint64_t term = hs->current().term.value() + 1;; ++term) {
      auto r = co_await hs->save({Term(term), vote_for(term)});
      if (!r) _exit(4);
      if (::write(ack_fd, &term, sizeof term) != sizeof term) _exit(5);
    }
  };
  asio::co_spawn(io, saver(), asio::detached);
  io.run();
  _exit(6);
}

using ChildMain = void (*)(const std::string&, std::uint64_t, int, std::uint64_t);

struct CycleResult {
  std::uint64_t acked = 0;
  bool killed = false;
  int status = 0;
};

// A killed child's io_uring keeps the directory's lock (and the hard state's) until its last
// write has landed, so that nothing can open the files under a write still in flight: wait for
// that, as a restarting server must.
void wait_for_locks(const std::string& dir) {
  for (const char* name : {"lock", "hardstate"}) {
    std::string path = dir + "/" + name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    bool free = false;
    for (int k = 0; k < 10000 && !free; ++k) {
      free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
      if (!free) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::close(fd);
    REQUIRE_MESSAGE(free, path, " stayed locked after its holder was killed");
  }
}

CycleResult run_cycle(ChildMain child, const std::string& dir, std::uint64_t cycle,
                      std::mt19937_64& rng) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::uint64_t child_seed = rng();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    child(dir, cycle, fds[1], child_seed);
    _exit(7);
  }
  ::close(fds[1]);
  CycleResult out;
  if (rng() % early_kill_one_in != 0) {
    pollfd pfd{fds[0], POLLIN, 0};
    std::uint64_t first = 0;
    if (::poll(&pfd, 1, first_ack_wait_ms_max) == 1 &&
        ::read(fds[0], &first, sizeof first) == sizeof first) {
      out.acked = first;
    }
  }
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % kill_delay_us_max));
  ::kill(pid, SIGKILL);
  REQUIRE(::waitpid(pid, &out.status, 0) == pid);
  wait_for_locks(dir);
  out.killed = WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGKILL;
  std::uint64_t v = 0;
  while (::read(fds[0], &v, sizeof v) == sizeof v) out.acked = std::max(out.acked, v);
  ::close(fds[0]);
  return out;
}

// Reopens the log, checks it against everything acknowledged so far and bounds its size.
void verify(const std::string& dir, std::uint64_t cycle, std::uint64_t acked, std::uint64_t& torn) {
  asio::io_context io;
  auto log = SegmentedLog::open(io.get_executor(), crash_options(dir, cycle));
  REQUIRE_MESSAGE(log.ok(), "reopen failed: ", (log.ok() ? "" : log.error().message()));
  SegmentedLog& l = **log;
  if (l.recovery().torn_file) ++torn;
  REQUIRE_MESSAGE(l.last_index().value() >= acked, "acknowledged ", acked, " but the log ends at ",
                  l.last_index().value());
  for (Index i = l.first_index(); i <= l.last_index(); ++i) {
    auto e = l.read(i);
    REQUIRE_MESSAGE(e.ok(), "index ", i.value(), ": ", (e.ok() ? "" : e.error().message()));
    REQUIRE_MESSAGE(payload_matches(*e, size_of(i.value())), "index ", i.value(),
                    " has wrong bytes");
  }
  if (l.last_index() - l.first_index() > compact_above_entries) {
    REQUIRE(run(io, l.compact_prefix(l.last_index() - keep_entries)).ok());
  }
}

// One run of kill cycles over one directory, its cycle count and seed taken from the
// environment.
struct KillRun {
  std::uint64_t cycles = env_u64("CORAFT_CRASH_CYCLES", 200);
  std::uint64_t seed = env_u64("CORAFT_CRASH_SEED", std::random_device{}());
  std::mt19937_64 rng{seed};
  TempDir dir;
  // The highest acknowledgement so far.
  std::uint64_t acked = 0;

  // Runs the kill cycles of `child`. After each, `check(cycle, acked)` verifies what survived
  // and may raise `acked` to what it found on disk. Returns how many kills followed a new
  // acknowledgement.
  template <class Check>
  std::uint64_t kill_cycles(ChildMain child, Check check) {
    std::uint64_t kills_after_ack = 0;
    for (std::uint64_t c = 0; c < cycles; ++c) {
      INFO("cycle ", c);
      CycleResult r = run_cycle(child, dir.path(), c, rng);
      REQUIRE_MESSAGE(r.killed, "the child exited on its own with status ", r.status);
      if (r.acked > acked) ++kills_after_ack;
      acked = std::max(acked, r.acked);
      check(c, acked);
    }
    return kills_after_ack;
  }
};

}  // namespace

TEST_CASE_FIXTURE(KillRun, "every acknowledged entry survives SIGKILL at random moments") {
  INFO("reproduce with CORAFT_CRASH_SEED=", seed);
  std::uint64_t torn = 0;
  std::uint64_t kills_mid_append = kill_cycles(
      child_main, [&](std::uint64_t c, std::uint64_t& a) { verify(dir.path(), c, a, torn); });
  MESSAGE("cycles ", cycles, ", entries acknowledged ", acked, ", torn tails cut ", torn);
  CHECK(kills_mid_append > cycles / 4);
}

TEST_CASE_FIXTURE(KillRun,
                  "every acknowledged hard-state save survives SIGKILL at random moments") {
  INFO("reproduce with CORAFT_CRASH_SEED=", seed);
  auto check = [&](std::uint64_t, std::uint64_t& a) {
    if (!std::filesystem::exists(dir.path() + "/hardstate")) {
      REQUIRE(a == 0);  // killed before the file was created
      return;
    }
    auto hs = HardStateFile::open_read_only(dir.path());
    REQUIRE_MESSAGE(hs.ok(), "reopen failed: ", (hs.ok() ? "" : hs.error().message()));
    std::uint64_t term = hs->current().term.value();
    // At most one save is in flight: it may or may not have reached the disk.
    REQUIRE_MESSAGE((term == a || term == a + 1), "acknowledged term ", a, " but found ", term);
    REQUIRE(hs->current().vote == vote_for(term));
    a = term;
  };
  std::uint64_t kills_mid_save = kill_cycles(hard_state_child_main, check);
  MESSAGE("cycles ", cycles, ", last term ", acked);
  CHECK(kills_mid_save > cycles / 4);
}

namespace {

// Runs a shell command quietly; true when it exits 0.
bool shell(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

// An ext4 image file loop-mounted at a directory, unmounted on destruction.
class LoopMount {
 public:
  LoopMount(std::string image, std::string mnt) : image_(std::move(image)), mnt_(std::move(mnt)) {
    std::filesystem::create_directories(mnt_);
    mounted_ = shell("mount -o loop " + image_ + " " + mnt_);
  }
  ~LoopMount() {
    if (mounted_ && !shell("umount " + mnt_)) shell("umount -l " + mnt_);
  }
  LoopMount(const LoopMount&) = delete;
  LoopMount& operator=(const LoopMount&) = delete;
  [[nodiscard]] bool mounted() const { return mounted_; }

 private:
  std::string image_;
  std::string mnt_;
  bool mounted_ = false;
};

}  // namespace

// Power cuts: the log lives on ext4 in a loop-mounted image file. At a random moment the writer
// is killed and the image copied at once, so the copy holds only what the file system had sent
// to its device, not what was still in its page cache; the copy, mounted as the disk after a
// power cut (the journal replayed), must hold every acknowledged entry. Needs root and loop
// devices: skipped with a message where they are not available.
TEST_CASE("every acknowledged entry survives a power cut of a loop-mounted ext4 image") {
  if (::geteuid() != 0) {
    MESSAGE("power-cut test skipped: mounting a loop image needs root");
    return;
  }
  TempDir work;
  std::string image = work.path() + "/disk.img";
  std::string copy = work.path() + "/cut.img";
  if (!shell("truncate -s 96M " + image) || !shell("mkfs.ext4 -q -F " + image)) {
    MESSAGE("power-cut test skipped: cannot make an ext4 image (mkfs.ext4 missing?)");
    return;
  }
  LoopMount disk(image, work.path() + "/mnt");
  if (!disk.mounted()) {
    MESSAGE("power-cut test skipped: the loop image cannot be mounted here");
    return;
  }
  std::string dir = work.path() + "/mnt/log";
  std::filesystem::create_directories(dir);
  std::uint64_t cycles = env_u64("CORAFT_POWERCUT_CYCLES", 6);
  std::uint64_t seed = env_u64("CORAFT_CRASH_SEED", std::random_device{}());
  INFO("reproduce with CORAFT_CRASH_SEED=", seed);
  std::mt19937_64 rng(seed);
  std::uint64_t acked = 0;
  std::uint64_t torn = 0;
  for (std::uint64_t c = 0; c < cycles; ++c) {
    INFO("cycle ", c);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::uint64_t child_seed = rng();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      child_main(dir, c, fds[1], child_seed);
    }
    ::close(fds[1]);
    pollfd pfd{fds[0], POLLIN, 0};
    std::uint64_t v = 0;
    if (::poll(&pfd, 1, first_ack_wait_ms_max) == 1 && ::read(fds[0], &v, sizeof v) == sizeof v) {
      acked = std::max(acked, v);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % kill_delay_us_max));
    ::kill(pid, SIGKILL);
    // The power cut: whatever the device has now.
    std::filesystem::copy_file(image, copy, std::filesystem::copy_options::overwrite_existing);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    while (::read(fds[0], &v, sizeof v) == sizeof v) acked = std::max(acked, v);
    ::close(fds[0]);
    wait_for_locks(dir);
    {
      LoopMount after(copy, work.path() + "/after");
      REQUIRE_MESSAGE(after.mounted(), "the image copied at the cut does not mount");
      verify(work.path() + "/after/log", c, acked, torn);
    }
    verify(dir, c, acked, torn);  // and after the kill alone; compacts the log on the image
  }
  MESSAGE("power cuts ", cycles, ", entries acknowledged ", acked, ", torn tails cut ", torn);
  CHECK(acked > 0);
}
