// gocaas-attach: the program the go command starts as GOCACHEPROG when a gocaas cache program elsewhere
// serves it. It passes its stdin, stdout and stderr (the go command's pipes to its cache program) over a
// unix socket with SCM_RIGHTS and exits; the cache program then answers on those pipes directly. Compiled,
// it starts in ~1 ms where Python needs ~10-17 ms, and the go command waits for it every time
// (gocaas/cache/attacher.py builds it and says when it is used).
//
//	gocaas-attach handoff SOCKET
//	    to the program gocaas started outside the build sandbox (gocaas/cache/handoff.py)
//	gocaas-attach resident SOCKET KEYFILE NAMESPACE PROGRAM [ARG...]
//	    to the resident cache program (gocaas/cache/resident.py), in NAMESPACE, if it takes the go
//	    command; else exec PROGRAM (the Python cache program, which serves the go command and starts a
//	    resident one)
package main

import (
	"os"
	"syscall"
)

const (
	hello         = "gocaas-resident 3\n" // resident.HELLO
	ready         = '?'                   // resident.READY
	ack           = '+'                   // resident.ACK
	statsEnv      = "GOCAAS_CACHEPROG_STATS"
	attachTimeout = 2 // seconds: resident.ATTACH_TIMEOUT_S
)

var pipes = []int{0, 1, 2}

func main() {
	args := os.Args[1:]
	switch {
	case len(args) == 2 && args[0] == "handoff":
		if err := handoff(args[1]); err != nil {
			fail("cannot reach the cache program at " + args[1] + ": " + err.Error())
		}
	case len(args) >= 5 && args[0] == "resident":
		if attach(args[1], args[2], args[3]) {
			return
		}
		// Not taken: the Python program serves the go command on the same descriptors.
		err := syscall.Exec(args[4], args[4:], os.Environ())
		fail("cannot run " + args[4] + ": " + err.Error())
	default:
		fail("usage: gocaas-attach handoff SOCKET | resident SOCKET KEYFILE NAMESPACE PROGRAM [ARG...]")
	}
}

// handoff gives the pipes to the program listening at path, which is there for this go command alone.
func handoff(path string) error {
	fd, err := dial(path, false)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Sendmsg(fd, []byte("go"), syscall.UnixRights(pipes...), nil, 0)
}

// attach hands the pipes to the resident program at path, which must hold the key in keyFile, to be served
// in namespace; whether it took them. The pipes go over only once it said it will take them (resident.py
// says why), and one that does not answer in time loses its socket and lock.
func attach(path, keyFile, namespace string) bool {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return false
	}
	var before syscall.Stat_t
	if syscall.Stat(path, &before) != nil {
		return false
	}
	msg := append([]byte(hello), key...)
	msg = append(msg, 0)
	msg = append(msg, namespace...)
	msg = append(msg, 0)
	msg = append(msg, os.Getenv(statsEnv)...)
	fd, err := dial(path, true)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	err = syscall.Sendmsg(fd, msg, nil, nil, 0)
	if err == nil {
		err = expect(fd, ready)
	}
	if err == syscall.EAGAIN { // SO_RCVTIMEO or SO_SNDTIMEO ran out: stopped, or hung
		var now syscall.Stat_t
		if syscall.Stat(path, &now) == nil && now.Ino == before.Ino { // resident.forsake
			syscall.Unlink(path)
			syscall.Unlink(path + ".lock")
		}
	}
	if err != nil {
		return false
	}
	if syscall.Sendmsg(fd, []byte("."), syscall.UnixRights(pipes...), nil, 0) != nil {
		return false
	}
	return expect(fd, ack) == nil
}

// dial connects to the unix socket at path; with limited, each send and receive waits attachTimeout at most.
func dial(path string, limited bool) (int, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if limited {
		limit := syscall.Timeval{Sec: attachTimeout}
		for _, opt := range []int{syscall.SO_SNDTIMEO, syscall.SO_RCVTIMEO} {
			if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &limit); err != nil {
				syscall.Close(fd)
				return -1, err
			}
		}
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// expect reads one byte from fd: nil if it is want.
func expect(fd int, want byte) error {
	reply := make([]byte, 1)
	n, err := syscall.Read(fd, reply)
	for err == syscall.EINTR { // a signal, not the timeout: the answer may still come
		n, err = syscall.Read(fd, reply)
	}
	if err != nil {
		return err
	}
	if n != 1 || reply[0] != want {
		return syscall.ECONNREFUSED // refused: another key, or shutting down
	}
	return nil
}

func fail(msg string) {
	os.Stderr.WriteString("gocaas cacheprog: " + msg + "\n")
	os.Exit(1)
}
