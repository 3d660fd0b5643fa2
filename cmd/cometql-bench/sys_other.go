//go:build !linux

package main

import (
	"os/exec"
	"syscall"
)

func bindNoPort(network, address string, c syscall.RawConn) error { return nil }

func dieWithParent(cmd *exec.Cmd) {}

func fdLimit() int { return 0 }
