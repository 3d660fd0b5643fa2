package sqlengine

import (
	"context"
	"testing"

	"github.com/pingcap/tidb/pkg/parser"
)

const hotInsert = "INSERT INTO pipes_messages (name, event, message) VALUES ('bench_pipe', 'event', '{\"text\":\"hello, it''s me\",\"n\":42}')"

// BenchmarkInsertPublish is the hot statement end to end in the engine:
// parse, translate, validate, publish (no subscribers, no history).
func BenchmarkInsertPublish(b *testing.B) {
	te := newTestEnv(b)
	s := te.session(0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Execute(ctx, hotInsert); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertPrepared is the hot statement as a prepared statement.
func BenchmarkInsertPrepared(b *testing.B) {
	te := newTestEnv(b)
	s := te.session(0)
	ctx := context.Background()
	st, err := s.Prepare("INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)")
	if err != nil {
		b.Fatal(err)
	}
	args := []any{"bench_pipe", "event", `{"text":"hello","n":42}`}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ExecuteStmt(ctx, st, args); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseOnly is the TiDB parser's share.
func BenchmarkParseOnly(b *testing.B) {
	p := parser.New()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.ParseSQL(hotInsert); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectHistory reads a 100-message history by name.
func BenchmarkSelectHistory(b *testing.B) {
	te := newTestEnv(b)
	s := te.session(0)
	ctx := context.Background()
	if _, err := s.Execute(ctx, "INSERT INTO pipes_settings (name, length) VALUES ('bench_log', 100)"); err != nil {
		b.Fatal(err)
	}
	for range 100 {
		if _, err := s.Execute(ctx, "INSERT INTO pipes_messages (name, message) VALUES ('bench_log', 'm')"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Execute(ctx, "SELECT * FROM pipes_messages WHERE name = 'bench_log' ORDER BY `index` DESC LIMIT 10"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertPublishParser is the hot statement through the TiDB parser
// (what the fast path saves).
func BenchmarkInsertPublishParser(b *testing.B) {
	te := newTestEnv(b)
	s := te.session(0)
	ctx := context.Background()
	q := hotInsert + " /* no fast path */"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Execute(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
