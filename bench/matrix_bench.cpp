// coraft-bench cluster --matrix: the peers' whole matrix, one cell after another, each in a child
// process of its own (a fresh heap, fresh data directories, nothing carried over), then a table,
// a JSON file and plots.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"
#include "commands.hpp"

#ifndef CORAFT_BENCH_PLOT
#define CORAFT_BENCH_PLOT "bench/plot.py"
#endif

namespace coraft::bench {
namespace {

struct Cell {
  std::uint64_t nodes, payload, inflight;
};

std::vector<Cell> cells(bool quick) {
  if (quick) return {{3, 256, 64}};
  std::vector<Cell> all;
  for (std::uint64_t s : {16, 256, 4096}) {
    for (std::uint64_t c : {1, 64, 512}) all.push_back({3, s, c});
  }
  all.push_back({5, 256, 64});
  return all;
}

// Runs `argv` and returns its standard output; nullopt when it could not run or failed.
std::optional<std::string> run_child(const std::vector<std::string>& args) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return std::nullopt;  // the child keeps only its dup on 1
  const int pid = spawn_process(args, out[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return std::nullopt;
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return text;
}

std::string stamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

int run_matrix(const MatrixOptions& o) {
  std::error_code ec;
  const std::string self = self_path();
  std::filesystem::create_directories(o.out, ec);
  if (ec) {
    std::fprintf(stderr, "coraft-bench cluster: cannot create %s: %s\n", o.out.c_str(),
                 ec.message().c_str());
    return 1;
  }
  const auto all = cells(o.quick);
  // Start-up, election and shutdown add about three seconds to each cell.
  const double per_cell = o.cell.warmup + o.cell.seconds + 3;
  const auto start = Clock::now();
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  int failures = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const Cell& c = all[i];
    const double left = per_cell * static_cast<double>(all.size() - i);
    std::fprintf(stderr, "[%zu/%zu] %llu servers, %llu B, %llu in flight (about %.0f s left)\n",
                 i + 1, all.size(), static_cast<unsigned long long>(c.nodes),
                 static_cast<unsigned long long>(c.payload),
                 static_cast<unsigned long long>(c.inflight), left);
    std::vector<std::string> args = {self,         "cluster",
                                     "--nodes",    std::to_string(c.nodes),
                                     "--payload",  std::to_string(c.payload),
                                     "--inflight", std::to_string(c.inflight),
                                     "--warmup",   std::to_string(o.cell.warmup),
                                     "--seconds",  std::to_string(o.cell.seconds),
                                     "--dir",      o.cell.dir,
                                     "--json"};
    if (o.cell.processes) args.emplace_back("--processes");
    if (o.cell.one_thread) args.emplace_back("--one-thread");
    if (o.cell.apply_inline) args.emplace_back("--apply-inline");
    auto text = run_child(args);
    nlohmann::ordered_json row;
    if (text) {
      // The JSON object is the line before the RESULT line.
      std::vector<std::string> lines;
      std::size_t from = 0;
      for (std::size_t nl; (nl = text->find('\n', from)) != std::string::npos; from = nl + 1)
        lines.push_back(text->substr(from, nl - from));
      for (const auto& l : lines) {
        if (!l.empty() && l.front() == '{') row = nlohmann::ordered_json::parse(l, nullptr, false);
      }
    }
    if (!row.is_object()) {
      ++failures;
      std::fprintf(stderr, "  the cell failed\n");
      row = {{"bench", "cluster"},
             {"nodes", c.nodes},
             {"payload", c.payload},
             {"inflight", c.inflight},
             {"failed", true}};
    }
    results.push_back(row);
  }
  std::printf(
      "\n| nodes | size B | in flight | ops/s | p50 us | p99 us | p99.9 us | CPU us/op | "
      "leader syncs/s | entries/sync |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    if (r.contains("failed")) {
      std::printf("| %llu | %llu | %llu | failed |||||||\n", r["nodes"].get<unsigned long long>(),
                  r["payload"].get<unsigned long long>(), r["inflight"].get<unsigned long long>());
      continue;
    }
    const double ops = r["ops_per_s"].get<double>();
    const double cpu_per_op =
        ops > 0 ? r["cpu_window_s"].get<double>() * 1e6 / (ops * r["window_s"].get<double>()) : 0;
    std::printf("| %llu | %llu | %llu | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f | %.1f |\n",
                r["nodes"].get<unsigned long long>(), r["payload"].get<unsigned long long>(),
                r["inflight"].get<unsigned long long>(), ops, r["p50_us"].get<double>(),
                r["p99_us"].get<double>(), r["p999_us"].get<double>(), cpu_per_op,
                r["leader_syncs_per_s"].get<double>(), r["leader_mean_batch"].get<double>());
  }
  const std::string json_path = o.out + "/cluster-matrix-" + stamp() + ".json";
  std::ofstream(json_path) << results.dump(2) << "\n";
  std::printf("\n%zu cells in %.0f s; figures in %s\n", all.size(), seconds_since(start),
              json_path.c_str());
  // The plots need python3 with matplotlib (the system's, when another python3 comes first on
  // the PATH); without them the table and the JSON file stand.
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"}) {
    const std::string probe = std::string(candidate) + " -c 'import matplotlib' 2>/dev/null";
    if (std::system(probe.c_str()) == 0) {
      python = candidate;
      break;
    }
  }
  if (python.empty()) {
    std::printf("no plots: python3 with matplotlib (python3-matplotlib) is not installed\n");
  } else {
    const std::string plot =
        python + " " + CORAFT_BENCH_PLOT + " '" + json_path + "' '" + o.out + "'";
    if (std::system(plot.c_str()) != 0) std::fprintf(stderr, "plotting failed: %s\n", plot.c_str());
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace coraft::bench
