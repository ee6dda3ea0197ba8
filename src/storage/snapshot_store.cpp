#include "storage/snapshot_store.hpp"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "storage/crc32c.hpp"
#include "storage/le_bytes.hpp"

namespace coraft::storage {
namespace {

constexpr std::size_t header_bytes = 64;
constexpr char magic[8] = {'c', 'o', 'r', 'a', 'f', 't', 'S', 'N'};
constexpr std::uint32_t version = 1;

std::uint32_t header_crc(const std::byte* h) {
  std::byte copy[header_bytes];
  std::memcpy(copy, h, header_bytes);
  put32(copy + 12, 0);
  return crc32c(copy);
}

std::string snapshot_name(const SnapshotMeta& m) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "snap-%020llu-%020llu.snap",
                static_cast<unsigned long long>(m.last_index.value()),
                static_cast<unsigned long long>(m.last_term.value()));
  return buf;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The last index and term a snapshot file's name gives, if it is one.
std::optional<std::pair<Index, Term>> parse_snapshot_name(std::string_view n) {
  if (n.size() != 51 || n.substr(0, 5) != "snap-" || !ends_with(n, ".snap") || n[25] != '-') {
    return std::nullopt;
  }
  std::uint64_t idx = 0;
  std::uint64_t term = 0;
  auto a = std::from_chars(n.data() + 5, n.data() + 25, idx);
  auto b = std::from_chars(n.data() + 26, n.data() + 46, term);
  if (a.ec != std::errc() || b.ec != std::errc() || a.ptr != n.data() + 25 ||
      b.ptr != n.data() + 46) {
    return std::nullopt;
  }
  return std::pair{Index(idx), Term(term)};
}

Error corrupt(const std::string& path, std::uint64_t offset, const std::string& why) {
  return Error(Errc::storage_corrupt, path + " offset " + std::to_string(offset) + ": " + why);
}

// A snapshot file's header, checked and found to agree with the file's size.
struct Header {
  std::byte bytes[header_bytes];
  std::uint64_t config_bytes = 0;
  std::uint64_t data_bytes = 0;
  std::uint64_t file_bytes = 0;
};

Result<Header> read_header(int fd, const std::string& path, std::uint64_t bytes_max) {
  Header h;
  auto size = file_size(fd, path);
  if (!size) return size.error();
  h.file_bytes = *size;
  if (*size < header_bytes) return corrupt(path, *size, "file ends inside the header");
  if (auto r = pread_all(fd, h.bytes, 0, path); !r) return r.error();
  if (std::memcmp(h.bytes, magic, 8) != 0 || get32(h.bytes + 8) != version ||
      get32(h.bytes + 12) != header_crc(h.bytes)) {
    return corrupt(path, 0, "bad snapshot header");
  }
  h.config_bytes = get32(h.bytes + 32);
  h.data_bytes = get64(h.bytes + 40);
  if (h.data_bytes > bytes_max)
    return Error(Errc::too_large, path + ": snapshot larger than bytes_max");
  const std::uint64_t expect = header_bytes + h.config_bytes + h.data_bytes;
  if (*size != expect) {
    return corrupt(
        path, std::min(*size, expect),
        "file is " + std::to_string(*size) + " bytes, the header says " + std::to_string(expect));
  }
  return h;
}

// The metadata of a file whose body matched the header's CRC: the configuration decoded, and
// the name (the store picks snapshots by name) agreeing with the header.
Result<SnapshotMeta> header_meta(const std::string& path, const Header& h,
                                 std::span<const std::byte> config) {
  auto conf = decode_configuration(config);
  if (!conf) return corrupt(path, header_bytes, "bad configuration: " + conf.error().message());
  SnapshotMeta meta{Index(get64(h.bytes + 16)), Term(get64(h.bytes + 24)), std::move(*conf)};
  if (auto named = parse_snapshot_name(path.substr(path.find_last_of('/') + 1))) {
    if (named->first != meta.last_index || named->second != meta.last_term) {
      return corrupt(path, 16,
                     "the header says index " + std::to_string(meta.last_index.value()) + " term " +
                         std::to_string(meta.last_term.value()) + ", the name says index " +
                         std::to_string(named->first.value()) + " term " +
                         std::to_string(named->second.value()));
    }
  }
  return meta;
}

}  // namespace

Result<SnapshotStore> SnapshotStore::open(const std::string& dir, std::uint32_t keep) {
  SnapshotStore s;
  s.dir_ = join_path(dir, "snapshots");
  s.keep_ = std::max<std::uint32_t>(keep, 1);
  if (auto r = make_dirs(s.dir_); !r) return r.error();
  auto names = list_dir(s.dir_);
  if (!names) return names.error();
  for (const std::string& n : *names) {
    if (!ends_with(n, ".tmp")) continue;
    if (auto r = remove_file(join_path(s.dir_, n)); !r) return r.error();
  }
  // A process killed between a snapshot's rename and the directory fsync leaves the new name in
  // the page cache only: make it durable before the snapshot is believed (and the log compacted).
  if (auto r = fsync_dir(s.dir_); !r) return r.error();
  return s;
}

SnapshotStore SnapshotStore::open_read_only(const std::string& dir) {
  SnapshotStore s;
  s.dir_ = join_path(dir, "snapshots");
  return s;
}

Result<SnapshotStore::Writer> SnapshotStore::begin(const SnapshotMeta& meta) {
  Writer w;
  w.dir_ = dir_;
  w.keep_ = keep_;
  w.meta_ = meta;
  w.config_ = encode_configuration(meta.configuration);
  w.final_path_ = join_path(dir_, snapshot_name(meta));
  w.tmp_path_ = w.final_path_ + ".tmp";
  auto fd = open_file(w.tmp_path_, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd) return fd.error();
  w.fd_ = std::move(*fd);
  std::byte zero[header_bytes] = {};
  if (auto r = pwrite_all(w.fd_.get(), zero, 0, w.tmp_path_); !r) return r.error();
  if (auto r = pwrite_all(w.fd_.get(), w.config_.span(), header_bytes, w.tmp_path_); !r)
    return r.error();
  w.crc_ = crc32c(w.config_.span());
  return w;
}

SnapshotStore::Writer::~Writer() {
  if (fd_.valid()) {
    fd_.reset();
    (void)remove_file(tmp_path_);
  }
}

Result<void> SnapshotStore::Writer::write(std::span<const std::byte> data) {
  CORAFT_REQUIRE(fd_.valid(), "write after finish");
  auto r = pwrite_all(fd_.get(), data, header_bytes + config_.size() + data_bytes_, tmp_path_);
  if (!r) return r;
  crc_ = crc32c_extend(crc_, data);
  data_bytes_ += data.size();
  return {};
}

Result<SnapshotInfo> SnapshotStore::Writer::finish() {
  CORAFT_REQUIRE(fd_.valid(), "finish called twice");
  std::byte h[header_bytes] = {};
  std::memcpy(h, magic, 8);
  put32(h + 8, version);
  put64(h + 16, meta_.last_index.value());
  put64(h + 24, meta_.last_term.value());
  put32(h + 32, static_cast<std::uint32_t>(config_.size()));
  put64(h + 40, data_bytes_);
  put32(h + 48, crc_);
  put32(h + 12, header_crc(h));
  if (auto r = pwrite_all(fd_.get(), h, 0, tmp_path_); !r) return r.error();
  if (auto r = sync_file(fd_.get(), tmp_path_); !r) return r.error();
  if (auto r = rename_file(tmp_path_, final_path_); !r) return r.error();
  fd_.reset();
  if (auto r = fsync_dir(dir_); !r) return r.error();
  if (auto r = prune(dir_, keep_); !r) return r.error();
  return SnapshotInfo{meta_, final_path_, data_bytes_};
}

Result<SnapshotStore::Receiver> SnapshotStore::receive(Index last, Term term) {
  Receiver r;
  r.dir_ = dir_;
  r.keep_ = keep_;
  r.last_ = last;
  r.term_ = term;
  r.final_path_ = path_of(last, term);
  // A name of its own per receiver: a later stream of the same snapshot never writes to, or
  // deletes, the file of an earlier one still being checked or installed.
  static std::atomic<std::uint64_t> receivers{0};
  r.tmp_path_ = r.final_path_ + "." + std::to_string(receivers.fetch_add(1)) + ".recv.tmp";
  auto fd = open_file(r.tmp_path_, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd) return fd.error();
  r.fd_ = std::move(*fd);
  return r;
}

SnapshotStore::Receiver::~Receiver() {
  if (fd_.valid()) {
    fd_.reset();
    (void)remove_file(tmp_path_);
  }
}

Result<void> SnapshotStore::Receiver::write(std::uint64_t offset, std::span<const std::byte> data) {
  CORAFT_REQUIRE(fd_.valid(), "write after adopt");
  if (offset != received_) {
    return Error(Errc::invalid_argument, "snapshot chunk at offset " + std::to_string(offset) +
                                             ", expected " + std::to_string(received_));
  }
  if (auto r = pwrite_all(fd_.get(), data, offset, tmp_path_); !r) return r;
  received_ += data.size();
  return {};
}

Result<void> SnapshotStore::Receiver::sync() {
  CORAFT_REQUIRE(fd_.valid(), "sync after adopt");
  return sync_file(fd_.get(), tmp_path_);
}

Result<SnapshotInfo> SnapshotStore::Receiver::check(std::uint64_t bytes_max) const {
  CORAFT_REQUIRE(fd_.valid(), "check after adopt");
  auto info = verify(tmp_path_, bytes_max);
  if (!info) return info.error();
  if (info->meta.last_index != last_ || info->meta.last_term != term_) {
    return corrupt(tmp_path_, 16,
                   "the received snapshot is of index " +
                       std::to_string(info->meta.last_index.value()) + " term " +
                       std::to_string(info->meta.last_term.value()) + ", the stream named index " +
                       std::to_string(last_.value()) + " term " + std::to_string(term_.value()));
  }
  if (info->file_bytes != received_) {
    return corrupt(tmp_path_, received_, "received bytes differ from the file's size");
  }
  return info;
}

Result<SnapshotInfo> SnapshotStore::Receiver::adopt() {
  CORAFT_REQUIRE(fd_.valid(), "adopt called twice");
  if (auto r = rename_file(tmp_path_, final_path_); !r) return r.error();
  fd_.reset();
  if (auto r = fsync_dir(dir_); !r) return r.error();
  if (auto r = prune(dir_, keep_); !r) return r.error();
  return SnapshotInfo{SnapshotMeta{last_, term_, {}}, final_path_, 0, 0, received_};
}

Result<SnapshotInfo> SnapshotStore::verify(const std::string& path, std::uint64_t bytes_max) {
  auto fd = open_file(path, O_RDONLY);
  if (!fd) return fd.error();
  auto h = read_header(fd->get(), path, bytes_max);
  if (!h) return h.error();
  std::vector<std::byte> config(h->config_bytes);
  if (auto r = pread_all(fd->get(), config, header_bytes, path); !r) return r.error();
  // The data is read in blocks, never held whole.
  std::uint32_t crc = crc32c(config);
  std::vector<std::byte> block(std::min<std::uint64_t>(h->data_bytes, std::uint64_t{1} << 20));
  for (std::uint64_t at = 0; at < h->data_bytes;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), h->data_bytes - at));
    std::span<std::byte> part(block.data(), n);
    if (auto r = pread_all(fd->get(), part, header_bytes + h->config_bytes + at, path); !r)
      return r.error();
    crc = crc32c_extend(crc, part);
    at += n;
  }
  if (crc != get32(h->bytes + 48)) return corrupt(path, header_bytes, "snapshot CRC mismatch");
  auto meta = header_meta(path, *h, config);
  if (!meta) return meta.error();
  return SnapshotInfo{std::move(*meta), path, h->data_bytes, header_bytes + h->config_bytes,
                      h->file_bytes};
}

std::string SnapshotStore::path_of(Index last, Term term) const {
  return join_path(dir_, snapshot_name(SnapshotMeta{last, term, {}}));
}

Result<std::vector<SnapshotInfo>> SnapshotStore::list() const {
  auto names = list_dir(dir_);
  if (!names) return names.error();
  std::vector<SnapshotInfo> out;
  for (const std::string& n : *names) {
    auto named = parse_snapshot_name(n);
    if (!named) continue;
    out.push_back({SnapshotMeta{named->first, named->second, {}}, join_path(dir_, n), 0});
  }
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& x, const SnapshotInfo& y) {
    return x.meta.last_index > y.meta.last_index ||
           (x.meta.last_index == y.meta.last_index && x.meta.last_term > y.meta.last_term);
  });
  return out;
}

Result<Snapshot> SnapshotStore::load(const std::string& path, std::uint64_t bytes_max) {
  auto fd = open_file(path, O_RDONLY);
  if (!fd) return fd.error();
  auto h = read_header(fd->get(), path, bytes_max);
  if (!h) return h.error();
  auto body = std::make_shared<std::vector<std::byte>>(h->config_bytes + h->data_bytes);
  if (auto r = pread_all(fd->get(), *body, header_bytes, path); !r) return r.error();
  if (crc32c(*body) != get32(h->bytes + 48)) {
    return corrupt(path, header_bytes, "snapshot CRC mismatch");
  }
  auto meta = header_meta(path, *h, std::span<const std::byte>(body->data(), h->config_bytes));
  if (!meta) return meta.error();
  std::span<const std::byte> data(body->data() + h->config_bytes, h->data_bytes);
  return Snapshot{std::move(*meta), Bytes::wrap(body, data)};
}

Result<std::optional<Snapshot>> SnapshotStore::load_latest(std::uint64_t bytes_max) const {
  auto all = list();
  if (!all) return all.error();
  if (all->empty()) return std::optional<Snapshot>{};
  auto s = load(all->front().path, bytes_max);
  if (!s) return s.error();
  return std::optional<Snapshot>(std::move(*s));
}

Result<void> SnapshotStore::prune(const std::string& dir, std::uint32_t keep) {
  SnapshotStore s;
  s.dir_ = dir;
  auto all = s.list();
  if (!all) return all.error();
  if (all->size() <= keep) return {};
  for (std::size_t i = keep; i < all->size(); ++i) {
    if (auto r = remove_file((*all)[i].path); !r) return r;
  }
  return fsync_dir(dir);
}

}  // namespace coraft::storage
