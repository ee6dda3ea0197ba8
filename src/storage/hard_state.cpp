#include "storage/hard_state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>

#include "storage/crc32c.hpp"
#include "storage/le_bytes.hpp"
#include "storage/log_scan.hpp"

namespace coraft::storage {
namespace {

constexpr char magic[8] = {'c', 'o', 'r', 'a', 'f', 't', 'H', 'S'};
constexpr std::size_t slot_used_bytes = 64;

using SlotBytes = std::array<std::byte, HardStateFile::slot_bytes>;

std::uint32_t slot_crc(const std::byte* slot) {
  std::byte copy[slot_used_bytes];
  std::memcpy(copy, slot, slot_used_bytes);
  std::memset(copy + 32, 0, 4);
  return crc32c(copy);
}

struct Decoded {
  std::uint64_t version;
  HardState hs;
};

std::optional<Decoded> decode(const std::byte* slot) {
  if (std::memcmp(slot, magic, 8) != 0) return std::nullopt;
  std::uint32_t crc = 0;
  for (int i = 3; i >= 0; --i) crc = (crc << 8) | static_cast<std::uint8_t>(slot[32 + i]);
  if (crc != slot_crc(slot)) return std::nullopt;
  for (std::size_t i = 36; i < HardStateFile::slot_bytes; ++i) {
    if (slot[i] != std::byte{0}) return std::nullopt;
  }
  return Decoded{get64(slot + 8), {Term(get64(slot + 16)), NodeId(get64(slot + 24))}};
}

bool all_zero(const SlotBytes& s) {
  for (std::byte b : s) {
    if (b != std::byte{0}) return false;
  }
  return true;
}

SlotBytes encode_slot(std::uint64_t version, const HardState& hs);

// Creates a hard-state file durably, written under a temporary name, synced and renamed: slot 1
// holds version 0 (term 0, no vote) and slot 0 is zeros, so the first save writes slot 0.
Result<Fd> create(const std::string& dir, const std::string& path) {
  std::string tmp = path + ".tmp";
  auto fd = open_file(tmp, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd) return fd.error();
  SlotBytes zero{};
  if (auto r = pwrite_all(fd->get(), zero, 0, tmp); !r) return r.error();
  if (auto r = pwrite_all(fd->get(), encode_slot(0, HardState{}), HardStateFile::slot_bytes, tmp);
      !r) {
    return r.error();
  }
  if (auto r = sync_file(fd->get(), tmp); !r) return r.error();
  if (auto r = rename_file(tmp, path); !r) return r.error();
  if (auto r = fsync_dir(dir); !r) return r.error();
  return fd;
}

// The highest term of an entry in the log in `dir`, if it holds any (damage found by the scan
// is left for the log's own open to report).
std::optional<Term> log_term_max(const std::string& dir) {
  auto scan = scan_log_dir(dir);
  if (!scan) return std::nullopt;
  std::optional<Term> out;
  for (const ScannedSegment& seg : scan->segments) {
    if (seg.scan.records.empty()) continue;
    Term t = seg.scan.records.back().term;
    if (!out || t > *out) out = t;
  }
  return out;
}

// A save() call, living in its coroutine's frame.
struct SaveWaiter {
  explicit SaveWaiter(const asio::any_io_executor& ex)
      : timer(ex, asio::steady_timer::time_point::max()) {}
  asio::steady_timer timer;  // cancelled to wake the coroutine
  bool woken = false;        // its turn came, or it finished
  std::optional<Result<void>> result;
};

asio::awaitable<void> wait_for(SaveWaiter& w) {
  if (w.woken) co_return;
  asio::error_code ec;
  co_await w.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

SlotBytes encode_slot(std::uint64_t version, const HardState& hs) {
  SlotBytes slot{};
  std::memcpy(slot.data(), magic, 8);
  put64(slot.data() + 8, version);
  put64(slot.data() + 16, hs.term.value());
  put64(slot.data() + 24, hs.vote.value());
  std::uint32_t crc = slot_crc(slot.data());
  for (int i = 0; i < 4; ++i) slot[32 + i] = static_cast<std::byte>(crc >> (8 * i));
  return slot;
}

}  // namespace

struct HardStateFile::State {
  std::string path;
  Fd fd;
  HardState current;
  std::uint64_t version = 0;
  std::uint64_t slot = 1;  // the slot holding `version`
  std::optional<std::uint64_t> damaged;
  std::unique_ptr<DiskChannel> backend;  // null when opened read-only
  std::function<int()> fault;
  bool saving = false;  // a save is in flight or being handed its turn
  bool closed = false;
  SaveWaiter* in_flight = nullptr;
  std::deque<SaveWaiter*> queue;  // saves waiting for their turn, oldest first

  static void wake(SaveWaiter& w) {
    w.woken = true;
    w.timer.cancel();
  }

  void hand_on() {
    if (queue.empty()) {
      saving = false;
      return;
    }
    SaveWaiter* next = queue.front();
    queue.pop_front();
    wake(*next);
  }

  void finish(SaveWaiter& w, std::uint64_t target, const HardState& hs, int err) {
    in_flight = nullptr;
    if (err == 0 && fault) err = fault();
    if (err == 0) {
      slot = target;
      ++version;
      current = hs;
      damaged.reset();
      w.result = Result<void>{};
    } else {
      Error e = errno_error(err, "write and sync " + path);
      log(LogLevel::error, "storage: ", e.message());
      w.result = std::move(e);
    }
    wake(w);
    hand_on();
  }

  void close() {
    backend.reset();  // waits for the write in flight; its completion does not run
    closed = true;
    Error e(Errc::shutting_down, "the hard state is closing; the save may or may not be durable");
    if (in_flight) {
      in_flight->result = e;
      wake(*in_flight);
      in_flight = nullptr;
    }
    for (SaveWaiter* w : queue) {
      w->result = e;
      wake(*w);
    }
    queue.clear();
  }

  // Reads both slots and picks the newest valid one. `dir` holds the log it is checked against
  // when a slot is damaged.
  Result<void> load(const std::string& dir) {
    std::array<SlotBytes, 2> slots{};
    std::array<std::optional<Decoded>, 2> dec;
    for (std::uint64_t k = 0; k < 2; ++k) {
      if (auto r = pread_all(fd.get(), slots[k], k * slot_bytes, path); !r) return r.error();
      dec[k] = decode(slots[k].data());
    }
    if (!dec[0] && !dec[1]) {
      if (all_zero(slots[0]) && all_zero(slots[1])) {
        // A created file always holds a valid slot: zeros are lost saves, and a server that may
        // have voted must not come back as one that never did.
        return Error(Errc::storage_corrupt,
                     path +
                         " offset 0: both hard-state slots are zeros; a created file always "
                         "holds a valid slot, so the saved term and vote are lost");
      }
      std::uint64_t off = all_zero(slots[0]) ? slot_bytes : 0;
      return Error(Errc::storage_corrupt,
                   path + " offset " + std::to_string(off) + ": no hard-state slot passes its CRC");
    }
    std::uint64_t k = (dec[0] && (!dec[1] || dec[0]->version > dec[1]->version)) ? 0 : 1;
    slot = k;
    version = dec[k]->version;
    current = dec[k]->hs;
    if (!dec[1 - k] && !all_zero(slots[1 - k])) {
      damaged = (1 - k) * slot_bytes;
      std::string where = path + " offset " + std::to_string(*damaged);
      // A save torn by a crash and a slot damaged later look alike: the damaged slot may have
      // held a newer term or vote than the one kept. Entries of a higher term in the log prove
      // that it did.
      if (auto t = log_term_max(dir); t && *t > current.term) {
        return Error(Errc::storage_corrupt,
                     where + ": damaged hard-state slot, and the other slot's term " +
                         std::to_string(current.term.value()) + " is below the log's term " +
                         std::to_string(t->value()) + ": the damaged slot held a newer state");
      }
      log(LogLevel::error, "storage: ", where,
          ": damaged hard-state slot ignored (a save torn by a crash, or corruption); using the "
          "other slot, version ",
          version, ", term ", current.term.value(), ", which the log does not contradict");
    }
    return {};
  }
};

Result<HardStateFile> HardStateFile::open(asio::any_io_executor ex, const std::string& dir,
                                          HardStateOptions options) {
  auto st = std::make_shared<State>();
  st->path = join_path(dir, "hardstate");
  st->fault = std::move(options.fault);
  bool missing = ::access(st->path.c_str(), F_OK) != 0 && errno == ENOENT;
  auto fd = missing ? create(dir, st->path) : open_file(st->path, O_RDWR);
  if (!fd) return fd.error();
  st->fd = std::move(*fd);
  // A process killed between a slot's write and its fsync leaves that slot in the page cache
  // only: make it durable before believing it (acting on an undurable vote could vote twice).
  if (!missing) {
    int injected = options.open_sync_fault ? options.open_sync_fault() : 0;
    if (injected != 0) return errno_error(injected, "fsync " + st->path);
    if (auto r = sync_file(st->fd.get(), st->path); !r) return r.error();
  }
  // One writer at a time, and a killed writer's save still landing keeps it locked (below).
  while (::flock(st->fd.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return Error(Errc::storage_io, st->path + " is locked: another hard state has it open");
    }
    return errno_error(errno, "flock " + st->path);
  }
  if (auto r = st->load(dir); !r) return r.error();
  auto backend = shared_disk_backend(std::move(ex), options.backend);
  if (!backend) return backend.error();
  st->backend = std::make_unique<DiskChannel>(std::move(*backend));
  if (auto r = st->backend->hold_until_gone(st->fd.get()); !r) return r.error();
  return HardStateFile(std::move(st));
}

Result<HardStateFile> HardStateFile::open_read_only(const std::string& dir) {
  auto st = std::make_shared<State>();
  st->path = join_path(dir, "hardstate");
  auto fd = open_file(st->path, O_RDONLY);
  if (!fd) return fd.error();
  st->fd = std::move(*fd);
  if (auto r = st->load(dir); !r) return r.error();
  return HardStateFile(std::move(st));
}

HardStateFile::~HardStateFile() {
  if (state_) state_->close();
}

HardStateFile& HardStateFile::operator=(HardStateFile&& other) noexcept {
  if (this != &other) {
    if (state_) state_->close();
    state_ = std::move(other.state_);
  }
  return *this;
}

const HardState& HardStateFile::current() const noexcept {
  return state_->current;
}
std::optional<std::uint64_t> HardStateFile::damaged_slot() const noexcept {
  return state_->damaged;
}
const std::string& HardStateFile::path() const noexcept {
  return state_->path;
}

asio::awaitable<Result<void>> HardStateFile::save(HardState hs) {
  std::shared_ptr<State> st = state_;  // the coroutine may outlive this object
  if (!st->backend) co_return Error(Errc::invalid_argument, st->path + " was opened read-only");
  auto ex = co_await asio::this_coro::executor;
  SaveWaiter w(ex);
  if (st->saving) {
    st->queue.push_back(&w);
    co_await wait_for(w);
    if (w.result) co_return std::move(*w.result);
    if (st->closed) co_return Error(Errc::shutting_down, "the hard state is closing");
    w.woken = false;
  }
  st->saving = true;
  st->in_flight = &w;
  std::uint64_t target = 1 - st->slot;
  SlotBytes slot = encode_slot(st->version + 1, hs);
  iovec iov{slot.data(), slot.size()};
  State* raw = st.get();  // the backend, and so this callback, never outlive the state
  st->backend->write_sync(st->fd.get(), target * slot_bytes, {&iov, 1}, Sync::fdatasync,
                          [raw, &w, target, hs](int err) { raw->finish(w, target, hs, err); });
  co_await wait_for(w);
  co_return std::move(*w.result);
}

}  // namespace coraft::storage
