// The production durable stream (the segmented log and the hard-state file), the data
// directory's identity file, and the offline bootstrap() and recover().
#include "node/storage_port.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <coraft/text.hpp>

namespace coraft::node {

namespace {

namespace fs = std::filesystem;

// The new log bootstrap() writes its one entry to: a small segment, not the node's usual size
// (it stays until a snapshot compacts it).
storage::LogOptions bootstrap_log_options(const std::string& dir) {
  storage::LogOptions lo;
  lo.dir = dir;
  lo.segment_bytes = 1u << 20;
  lo.entry_bytes_max = 64u << 10;
  lo.batch_bytes_max =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(lo.batch_bytes_max, lo.segment_bytes));
  lo.direct_bytes_max = std::min(lo.direct_bytes_max, lo.batch_bytes_max);
  return lo;
}

class StorageDurable final : public DurablePort {
 public:
  StorageDurable(std::unique_ptr<storage::SegmentedLog> log, storage::HardStateFile hs)
      : log_(std::move(log)), hs_(std::move(hs)) {}

  asio::awaitable<Result<void>> save_hard_state(core::HardState hs) override {
    if (!log_) co_return Errc::shutting_down;
    auto r = co_await hs_->save(hs);
    co_return r;
  }
  asio::awaitable<Result<void>> append(std::vector<Entry> entries) override {
    if (!log_) co_return Errc::shutting_down;
    auto r = co_await log_->append(std::move(entries));
    co_return r;
  }
  asio::awaitable<Result<void>> truncate_suffix(Index from) override {
    if (!log_) co_return Errc::shutting_down;
    auto r = co_await log_->truncate_suffix(from);
    co_return r;
  }
  asio::awaitable<Result<void>> compact_prefix(Index upto) override {
    if (!log_) co_return Errc::shutting_down;
    auto r = co_await log_->compact_prefix(upto);
    co_return r;
  }
  asio::awaitable<Result<void>> clear_log() override {
    if (!log_) co_return Errc::shutting_down;
    auto r = co_await log_->truncate_suffix(log_->first_index());
    co_return r;
  }
  void close() override {
    hs_.reset();
    log_.reset();
  }

 private:
  std::unique_ptr<storage::SegmentedLog> log_;
  std::optional<storage::HardStateFile> hs_;
};

Error io_error(const std::string& what, const std::string& path, int err) {
  return Error(Errc::storage_io, detail::concat(what, " ", path, ": ", std::strerror(err)));
}

Result<void> sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("open", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("fsync", dir, err);
  return {};
}

// Runs `a` to completion on a private io_context (offline tools only).
Result<void> run_blocking(asio::io_context& io, asio::awaitable<Result<void>> a) {
  std::optional<Result<void>> out;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto r = co_await std::move(a);
        out.emplace(std::move(r));
      },
      asio::detached);
  io.run();
  io.restart();
  if (!out) return Error(Errc::storage_io, "offline write did not finish");
  return std::move(*out);
}

}  // namespace

std::string log_dir(const std::string& data_dir) {
  return data_dir + "/log";
}

std::unique_ptr<DurablePort> make_storage_durable(std::unique_ptr<storage::SegmentedLog> log,
                                                  storage::HardStateFile hs) {
  return std::make_unique<StorageDurable>(std::move(log), std::move(hs));
}

Result<std::optional<std::uint64_t>> read_cluster_id(const std::string& data_dir) {
  const std::string path = data_dir + "/" + identity_file;
  std::ifstream in(path);
  if (!in) {
    if (!fs::exists(path)) return std::optional<std::uint64_t>();
    return Error(Errc::storage_io, "cannot read " + path);
  }
  std::string key;
  std::uint64_t id = 0;
  in >> key >> id;
  if (key != "cluster_id" || !in) {
    return Error(Errc::storage_corrupt, path + ": expected 'cluster_id <number>'");
  }
  return std::optional<std::uint64_t>(id);
}

Result<void> write_cluster_id(const std::string& data_dir, std::uint64_t cluster_id) {
  const std::string path = data_dir + "/" + identity_file;
  const std::string tmp = path + ".tmp";
  const std::string text = detail::concat("cluster_id ", cluster_id, "\n");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("create", tmp, errno);
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) return io_error("write", tmp, err);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return io_error("rename", tmp, errno);
  return sync_dir(data_dir);
}

}  // namespace coraft::node

namespace coraft {

Result<void> bootstrap(const std::string& data_dir, std::uint64_t cluster_id, NodeId self,
                       const Configuration& initial) {
  namespace fs = std::filesystem;
  if (data_dir.empty()) return Error(Errc::invalid_argument, "bootstrap: data_dir is empty");
  if (cluster_id == 0) return Error(Errc::invalid_argument, "bootstrap: cluster_id is 0");
  if (initial.voters.empty()) {
    return Error(Errc::invalid_argument, "bootstrap: the initial configuration has no voter");
  }
  if (initial.joint()) {
    return Error(Errc::invalid_argument, "bootstrap: the initial configuration is joint");
  }
  if (!initial.contains(self)) {
    return Error(Errc::invalid_argument,
                 detail::concat("bootstrap: node ", self, " is not in the initial configuration"));
  }
  std::error_code ec;
  if (fs::exists(data_dir, ec) && !fs::is_empty(data_dir, ec)) {
    return Error(Errc::invalid_argument,
                 "bootstrap: " + data_dir + " is not empty (already initialised?)");
  }
  fs::create_directories(data_dir, ec);
  if (ec) return Error(Errc::storage_io, "bootstrap: create " + data_dir + ": " + ec.message());

  // The hard state first: a log never holds entries of a term its hard state has not reached.
  asio::io_context io;
  const std::string dir = node::log_dir(data_dir);
  fs::create_directories(dir, ec);
  if (ec) return Error(Errc::storage_io, "bootstrap: create " + dir + ": " + ec.message());
  auto hs = storage::HardStateFile::open(io.get_executor(), dir);
  if (!hs) return hs.error();
  auto saved = node::run_blocking_save(io, *hs, storage::HardState{Term(1), no_node});
  if (!saved) return saved;
  storage::LogOptions lo = node::bootstrap_log_options(dir);
  auto log = storage::SegmentedLog::open(io.get_executor(), lo);
  if (!log) return log.error();
  std::vector<Entry> first;
  first.push_back(Entry{Index(1), Term(1), EntryType::config, encode_configuration(initial)});
  auto appended = node::run_blocking_append(io, **log, std::move(first));
  if (!appended) return appended;
  return node::write_cluster_id(data_dir, cluster_id);
}

Result<void> recover(const std::string& data_dir, const Configuration& configuration) {
  if (configuration.voters.empty() || configuration.joint()) {
    return Error(Errc::invalid_argument, "recover: need a plain configuration with a voter");
  }
  auto id = node::read_cluster_id(data_dir);
  if (!id) return id.error();
  if (!*id) return Error(Errc::invalid_argument, "recover: " + data_dir + " is not initialised");
  asio::io_context io;
  storage::LogOptions lo;
  lo.dir = node::log_dir(data_dir);
  auto log = storage::SegmentedLog::open(io.get_executor(), lo);
  if (!log) return log.error();
  auto store = storage::SnapshotStore::open(data_dir);
  if (!store) return store.error();
  Index last = (*log)->last_index();
  Term term;
  if (last >= (*log)->first_index() && last > Index(0)) {
    auto t = (*log)->term_at(last);
    if (!t) return t.error();
    term = *t;
  } else {
    auto snaps = store->list();
    if (!snaps) return snaps.error();
    if (snaps->empty()) return Error(Errc::invalid_argument, "recover: the log is empty");
    last = snaps->front().meta.last_index;
    term = snaps->front().meta.last_term;
  }
  std::vector<Entry> e;
  e.push_back(
      Entry{Index(last.value() + 1), term, EntryType::config, encode_configuration(configuration)});
  return node::run_blocking_append(io, **log, std::move(e));
}

}  // namespace coraft

namespace coraft::node {

Result<void> run_blocking_append(asio::io_context& io, storage::SegmentedLog& log,
                                 std::vector<Entry> entries) {
  return run_blocking(io, log.append(std::move(entries)));
}

Result<void> run_blocking_save(asio::io_context& io, storage::HardStateFile& hs,
                               storage::HardState state) {
  return run_blocking(io, hs.save(state));
}

}  // namespace coraft::node
