package audit

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashDirEnv = "FEDGATE_AUDIT_CRASH_WRITER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashWriter(dir)
		return
	}
	os.Exit(m.Run())
}

// crashWriter runs in a child process: it appends from several goroutines
// forever and prints "seq correlation_id" for every acknowledged record.
func crashWriter(dir string) {
	l, err := Open(Config{Dir: dir, NodeID: "crash-node", SegmentMaxBytes: 16 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if st := l.Stats(); !st.Writable {
		fmt.Fprintln(os.Stderr, "not writable:", st.Err)
		os.Exit(3)
	}
	var mu sync.Mutex
	os.Stdout.WriteString("ready\n")
	for g := range 8 {
		go func() {
			for i := 0; ; i++ {
				cid := fmt.Sprintf("%d-%d-%d", os.Getpid(), g, i)
				seq, err := l.Append(context.Background(), Record{Action: ActionProxyRequest, FederationPeerID: "peer-crash",
					Decision: DecisionAllow, CorrelationID: cid, RemoteSubject: strings.Repeat("x", i%200)})
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				mu.Lock()
				os.Stdout.WriteString(strconv.FormatUint(seq, 10) + " " + cid + "\n")
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashSIGKILL kills a writer process with SIGKILL at random points
// (during recovery, appends, rotations) 200 times, in four logs of 50 kills
// each; after each kill the log reopens, every acknowledged seq is present
// with its content, and the chain verifies.
func TestCrashSIGKILL(t *testing.T) {
	kills := 200
	if testing.Short() {
		kills = 30
	}
	var dir string
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	// A safety bound for a heavily loaded machine: stop early (but after at
	// least 50 kills) rather than run unbounded.
	deadline := time.Now().Add(120 * time.Second)
	var totalAcked, torn, withAcks int
	var openTime, iterTime time.Duration
	var maxSeq uint64
	for k := 0; k < kills; k++ {
		tIter := time.Now()
		if k%50 == 0 {
			// A fresh log every 50 kills keeps each reopen's full scan
			// (under the race detector) short.
			dir, maxSeq = t.TempDir(), 0
		}
		if time.Now().After(deadline) {
			if k < 50 {
				t.Fatalf("only %d kills before the time bound", k)
			}
			t.Logf("time bound reached after %d kills", k)
			kills = k
			break
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		proc := cmd.Process
		t.Cleanup(func() { proc.Kill() }) // if a check below fails first
		acked := map[uint64]string{}
		readDone := make(chan struct{})
		ready := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					close(ready)
					continue
				}
				seq, cid, ok := strings.Cut(sc.Text(), " ")
				n, err := strconv.ParseUint(seq, 10, 64)
				if !ok || err != nil {
					continue
				}
				acked[n] = cid
			}
		}()
		if rng.IntN(5) == 0 {
			// Early: often while the child is still recovering.
			time.Sleep(time.Duration(rng.IntN(80_000)) * time.Microsecond)
		} else {
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatalf("kill %d: writer never became ready: %s", k, stderr.String())
			}
			time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-readDone
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: writer exited on its own: %v\n%s", k, err, stderr.String())
		}
		totalAcked += len(acked)
		if len(acked) > 0 {
			withAcks++
		}

		tOpen := time.Now()
		l, err := Open(Config{Dir: dir, NodeID: "crash-node", SegmentMaxBytes: 16 << 10})
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", k, err)
		}
		openTime += time.Since(tOpen)
		st := l.Stats()
		if st.TruncatedBytes > 0 {
			torn++
		}
		if !st.Writable {
			l.Close()
			t.Fatalf("kill %d: log not writable after crash: %s", k, st.Err)
		}
		var lo uint64 = ^uint64(0)
		for s := range acked {
			if s > st.LastSeq {
				l.Close()
				t.Fatalf("kill %d: acknowledged seq %d missing (last durable %d)", k, s, st.LastSeq)
			}
			lo = min(lo, s)
		}
		if len(acked) > 0 {
			found := 0
			cursor := strconv.FormatUint(lo-1, 10)
			for cursor != "" {
				p, err := l.Query(Query{Order: OldestFirst, Cursor: cursor, Limit: MaxQueryLimit})
				if err != nil {
					t.Fatalf("kill %d: query: %v", k, err)
				}
				for _, r := range p.Records {
					if cid, ok := acked[r.Seq]; ok {
						if r.CorrelationID != cid {
							t.Fatalf("kill %d: seq %d holds %q, acknowledged as %q", k, r.Seq, r.CorrelationID, cid)
						}
						found++
					}
				}
				cursor = p.NextCursor
			}
			if found != len(acked) {
				t.Fatalf("kill %d: found %d of %d acknowledged records", k, found, len(acked))
			}
		}
		if k%25 == 24 || k == kills-1 {
			v, err := l.Verify()
			if err != nil || !v.OK || v.LastSeq != st.LastSeq || v.FirstSeq != 1 || uint64(v.Records) != st.LastSeq {
				t.Fatalf("kill %d: Verify = %+v, %v (stats %+v)", k, v, err, st)
			}
		}
		if st.LastSeq < maxSeq {
			t.Fatalf("kill %d: last seq went back from %d to %d", k, maxSeq, st.LastSeq)
		}
		maxSeq = st.LastSeq
		l.Close()
		iterTime += time.Since(tIter)
	}
	if v, err := VerifyDir(dir); err != nil || !v.OK || v.LastSeq != maxSeq {
		t.Fatalf("final VerifyDir = %+v, %v", v, err)
	}
	t.Logf("time in reopen %v of %v", openTime, iterTime)
	t.Logf("%d kills (%d after acknowledgements, %d left a torn tail), %d acknowledged records checked, last seq %d", kills, withAcks, torn, totalAcked, maxSeq)
	if totalAcked == 0 {
		t.Fatal("no record was ever acknowledged: the test proves nothing")
	}
}
