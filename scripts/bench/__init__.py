"""The push_service benchmark (`make bench`; `python -m bench --help` with scripts/ on
the path, or `python scripts/bench --help`).

Modules, one concept each:

- cli: options, quick mode, the order of the phases, the exit status;
- rounds, contenders, baselines: interleaved rounds (A B, B A, ...) of everything that
  sends pushes, each contender a process of its own; summary: medians and spread;
- service: one push_service process; compare: the service of another revision;
- bare, naive_consumer, pywebpush_client, node/: the clients the service is measured
  against (the bare ceiling, the issue's naive consumer, pywebpush, Node web-push);
- sink, sink_certs, sink_control: the local HTTPS push service they all send to;
- latency, memory, fanout: the issue's other goals, each on a fresh service process;
- goals, report: the goals with pass/miss marks, and the printed tables;
- profiling: py-spy at steady state, summarised by component;
- data, amqp, procfs, env: test data, RabbitMQ/Redis plumbing, /proc readers, the
  benchmark's own environment (.bench/).

Nothing here is imported by push_service; the benchmark only runs it as a process.
Microbenchmarks of one part (metrics_calls.py, bench_parse.py) sit beside it and run on their own
as scripts.
"""
