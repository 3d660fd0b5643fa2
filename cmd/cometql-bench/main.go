// Command cometql-bench is cometql's load generator. It speaks the
// server's protocols as real clients do: WebSocket subscribers on the
// CppComet URL, long-poll subscribers, and MySQL publishers through
// go-sql-driver/mysql. It measures delivery (throughput, latency, lost,
// duplicated and out-of-order messages) on the client side and the
// server's RSS, CPU, open files and goroutines from /proc and /metrics.
//
//	cometql-bench <scenario> [flags]     run one scenario, print one JSON line
//	cometql-bench table [--median] [f]   Markdown table of result lines
//
// Connections are held by worker processes (this binary re-executed with
// COMETQL_BENCH_WORKER=1), --per-worker each, to stay under the
// per-process open-file cap, and spread over source addresses 127.0.0.2,
// 127.0.0.3, ... to stay under the ports-per-address limit and the
// server's per-IP cap. Publishers run in the parent process.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(workerMain(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "table" {
		return tableMain(args[1:], stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "cometql-bench: %v\n", err)
		return 2
	}
	return runScenario(o, stdout, stderr)
}
