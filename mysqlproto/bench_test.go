package mysqlproto_test

import (
	"context"
	"testing"

	"github.com/cometql/cometql/mysqlproto"
)

// BenchmarkWireInsert is the hot statement through the wire protocol: one
// go-sql-driver connection, literal SQL (one round trip per statement).
func BenchmarkWireInsert(b *testing.B) {
	ts := startServer(b, mysqlproto.Config{})
	c := ts.conn(b, "root", rootPassword, "")
	ctx := context.Background()
	q := "INSERT INTO pipes_messages (name, event, message) VALUES ('bench_pipe', 'event', '{\"text\":\"hello\",\"n\":42}')"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWireInsertParallel publishes from 8 connections at once.
func BenchmarkWireInsertParallel(b *testing.B) {
	ts := startServer(b, mysqlproto.Config{})
	db := ts.open(b, "root", rootPassword, "")
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	q := "INSERT INTO pipes_messages (name, event, message) VALUES ('bench_pipe', 'event', '{\"text\":\"hello\",\"n\":42}')"
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.ExecContext(context.Background(), q); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkWireSelect reads a small result set.
func BenchmarkWireSelect(b *testing.B) {
	ts := startServer(b, mysqlproto.Config{})
	c := ts.conn(b, "root", rootPassword, "")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rows, err := c.QueryContext(ctx, "SHOW TABLES")
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
		}
		rows.Close()
	}
}
