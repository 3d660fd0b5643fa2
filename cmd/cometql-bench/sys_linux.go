//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind() to a
// source address without picking the port yet; connect() picks it for the
// whole 4-tuple, so one source address is good for ~28k connections per
// destination and TIME_WAIT ports can be reused.
const ipBindAddressNoPort = 24

// bindNoPort is a net.Dialer Control that sets IP_BIND_ADDRESS_NO_PORT.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dieWithParent makes a worker process get SIGKILL when the parent exits.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// fdLimit is the process's soft limit on open files (0 when unknown).
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return int(r.Cur)
}
