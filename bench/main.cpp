// coraft-bench: latency and throughput figures, each printed beside the machine's own limits
// (or the other Raft libraries) measured in the same run. This file parses the command line;
// each subcommand runs in its own file (commands.hpp).
#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "bench_util.hpp"
#include "commands.hpp"

namespace coraft::bench {
namespace {

// A byte-count or count flag that accepts the k, m and g suffixes, within [min, max].
CLI::Option* add_size(CLI::App& app, const std::string& name, std::uint64_t& out,
                      const std::string& what, std::uint64_t min, std::uint64_t max) {
  auto* opt = app.add_option_function<std::string>(
      name,
      [&out, name, min, max](const std::string& s) {
        auto v = parse_size(s);
        if (!v) {
          throw CLI::ValidationError(name, "'" + s +
                                               "' is not a size (a number, optionally with a "
                                               "k, m or g suffix, below 2^64)");
        }
        if (*v < min || *v > max) {
          throw CLI::ValidationError(name, "'" + s + "' is out of range [" + std::to_string(min) +
                                               ", " + std::to_string(max) + "]");
        }
        out = *v;
      },
      what);
  return opt->type_name("SIZE");
}

CLI::Option* add_seconds(CLI::App& app, const std::string& name, double& out,
                         const std::string& what, double max = 3600) {
  return app.add_option(name, out, what)
      ->check(CLI::Range(0.0, max))
      ->check(CLI::Validator(
          [](std::string& s) {
            return std::stod(s) > 0 ? std::string() : std::string("must be positive");
          },
          "POSITIVE"))
      ->capture_default_str();
}

void add_core(CLI::App& app, CoreOptions& o) {
  auto* c = app.add_subcommand("core", "the protocol core alone: servers in memory, no IO");
  add_size(*c, "--payload", o.payload, "bytes per entry", 1, 1u << 20)->required();
  add_size(*c, "--nodes", o.nodes, "servers (default 3)", 1, 9);
  add_seconds(*c, "--seconds", o.seconds, "length of the run");
  c->add_flag("--json", o.json, "end with one JSON line of the figures");
}

void add_net(CLI::App& app, NetOptions& o) {
  auto* c = app.add_subcommand("net", "the peer transport over loopback TCP");
  add_size(*c, "--payload", o.payload, "bytes per entry (default 256)", 1, 64ull << 20);
  add_size(*c, "--entries", o.entries, "entries per AppendEntries (default 64)", 1, 1u << 16);
  add_seconds(*c, "--seconds", o.seconds, "length of the run");
  c->add_flag("--json", o.json, "end with one JSON line of the figures");
}

void add_log(CLI::App& app, LogOptions& o) {
  auto* c = app.add_subcommand("log", "the segmented log: group commit against the disk");
  add_size(*c, "--payload", o.payload, "bytes per entry", 0, 64ull << 20)->required();
  add_size(*c, "--inflight", o.inflight, "appends outstanding", 1, 4096)->required();
  add_seconds(*c, "--seconds", o.seconds, "length of the run");
  c->add_option("--dir", o.dir, "where the log and the floors' files go")->capture_default_str();
  c->add_flag("--json", o.json, "end with one JSON line of the figures");
  c->add_option("--prepare", o.prepare, "how segments are prepared")
      ->check(CLI::IsMember({"prewrite", "fallocate"}))
      ->capture_default_str();
  c->add_option("--backend", o.backend, "the log's disk path")
      ->check(CLI::IsMember({"auto", "uring", "thread"}))
      ->capture_default_str();
  add_size(*c, "--segment", o.segment_bytes, "segment size (default 64m)", 1u << 20, 1ull << 40);
  add_size(*c, "--direct", o.direct_bytes,
           "batches whose block-aligned extent fits go O_DIRECT (default 16m, 0 off)", 0,
           1ull << 30)
      ->check(CLI::Validator(
          [](std::string& s) {
            auto v = parse_size(s);
            return v && *v % 4096 == 0 ? std::string() : std::string("a multiple of 4096");
          },
          "ALIGNED"));
  c->add_option("--direct-sync", o.direct_sync, "how O_DIRECT batches are made durable")
      ->check(CLI::IsMember({"dsync", "fdatasync"}))
      ->capture_default_str();
  c->add_flag("--all-floors", o.all_floors, "also measure the other floors (bench/README.md)");
}

void add_cluster_flags(CLI::App& c, ClusterOptions& o) {
  add_size(c, "--nodes", o.nodes, "servers (default 3)", 1, 7);
  add_size(c, "--payload", o.payload, "bytes per entry (default 256)", 1, 1u << 20);
  add_size(c, "--inflight", o.inflight, "proposals always outstanding (default 64)", 1, 65536);
  add_seconds(c, "--warmup", o.warmup, "seconds before the measured window", 600);
  add_seconds(c, "--seconds", o.seconds, "the measured window");
  c.add_option("--dir", o.dir, "a fresh directory for the data goes under this")
      ->capture_default_str();
  c.add_flag("--json", o.json, "also print one JSON object of the figures");
  c.add_flag("--processes", o.processes,
             "each server in its own process (the load runs beside server 1)");
  c.add_flag("--one-thread", o.one_thread, "the in-process servers share one io thread")
      ->excludes("--processes");
  c.add_flag("--apply-inline", o.apply_inline,
             "the state machine runs on each node's executor (NodeConfig::apply_inline)");
  add_seconds(c, "--disk-floor", o.disk_floor_seconds,
              "after the run, measure for this long one 4 KiB durable write alone and one per "
              "server at once until a majority is durable, in the same directory",
              60)
      ->default_str("off");
}

void add_cluster(CLI::App& app, ClusterOptions& o, MatrixOptions& m, bool& matrix) {
  auto* c = app.add_subcommand(
      "cluster",
      "whole servers (fsync on, TCP on 127.0.0.1, a counter state machine) under a closed "
      "loop of proposals to the leader; the last line is the RESULT line of the peers' harness");
  add_cluster_flags(*c, o);
  c->add_flag("--matrix", matrix,
              "every cell of the peers' matrix (sizes 16, 256, 4096 x in flight 1, 64, 512, and "
              "5 servers at 256 B, 64), then a table, a JSON file and plots");
  c->add_option("--out", m.out, "with --matrix: where the JSON file and the plots go")
      ->capture_default_str();
  c->add_flag("--quick", m.quick, "with --matrix: one cell, to check the machinery");
}

void add_snapshot(CLI::App& app, SnapshotOptions& o) {
  auto* c = app.add_subcommand(
      "snapshot",
      "one snapshot streamed from a leader to a new learner on loopback, beside the loopback "
      "TCP and 1 MiB fdatasync floors");
  add_size(*c, "--bytes", o.bytes, "the snapshot's size (default 64m)", 1, 64ull << 30);
  add_size(*c, "--chunk", o.chunk, "bytes per chunk (default 1m)", 4096, 32ull << 20);
  add_size(*c, "--window", o.window, "chunks unacknowledged at most (default 4)", 1, 1024);
  c->add_option("--dir", o.dir, "a fresh directory for the data goes under this")
      ->capture_default_str();
  c->add_flag("--json", o.json, "also print one JSON object of the figures");
}

void add_cluster_server(CLI::App& app, ClusterServerOptions& o) {
  auto* c = app.add_subcommand("cluster-server", "one server of cluster --processes");
  c->group("");  // internal: not listed in the help
  c->add_option("--id", o.id)->required()->check(CLI::Range(1, 7));
  c->add_option("--dir", o.dir)->required();
  c->add_option("--port", o.port)->required();
  c->add_option("--election-ticks", o.election_ticks)->check(CLI::Range(2, 1000));
  c->add_flag("--apply-inline", o.apply_inline);
  c->add_option_function<std::vector<std::string>>(
      "--peer",
      [&o](const std::vector<std::string>& all) {
        for (const std::string& p : all) {
          auto eq = p.find('=');
          if (eq == std::string::npos) throw CLI::ValidationError("--peer", "is ID=PORT");
          o.peers.emplace_back(std::stoull(p.substr(0, eq)),
                               static_cast<std::uint16_t>(std::stoul(p.substr(eq + 1))));
        }
      },
      "ID=PORT");
}

}  // namespace
}  // namespace coraft::bench

int main(int argc, char** argv) {
  using namespace coraft::bench;
  CLI::App app("coraft-bench: figures measured beside the machine's limits in the same run",
               "coraft-bench");
  app.require_subcommand(1);
  CoreOptions core;
  NetOptions net;
  LogOptions log;
  ClusterOptions cluster;
  ClusterServerOptions server;
  MatrixOptions matrix;
  SnapshotOptions snapshot;
  bool run_matrix_instead = false;
  add_core(app, core);
  add_net(app, net);
  add_log(app, log);
  add_cluster(app, cluster, matrix, run_matrix_instead);
  add_cluster_server(app, server);
  add_snapshot(app, snapshot);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line naming the subcommand and the flag, then the way to the usage; exit status 2.
    std::string sub = argc > 1 && argv[1][0] != '-' ? std::string(" ") + argv[1] : std::string();
    std::fprintf(stderr, "coraft-bench%s: %s\nsee: coraft-bench%s --help\n", sub.c_str(), e.what(),
                 sub.c_str());
    return 2;
  }
  const std::string name = app.get_subcommands().front()->get_name();
  if (name == "core") return run_core(core);
  if (name == "net") return run_net(net);
  if (name == "log") return run_log(log);
  if (name == "cluster-server") return run_cluster_server(server);
  if (name == "snapshot") return run_snapshot(snapshot);
  if (run_matrix_instead) {
    matrix.cell = cluster;
    return run_matrix(matrix);
  }
  return run_cluster(cluster);
}
