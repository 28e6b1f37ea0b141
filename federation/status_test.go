package federation

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCanTransitionAllPairs(t *testing.T) {
	// Written out from PLATFORM.md independently of the implementation's
	// table: P=proposed A=accepted E=enrolled C=active D=degraded
	// S=suspended R=revoked. Rows are "from", columns "to" in that order.
	const matrix = `
P: . y . . . . y
A: . . y . . y y
E: . . . y . y y
C: . . . . y y y
D: . . . y . y y
S: . y . . . . y
R: . . . . . . .`
	all := Statuses()
	rows := strings.Split(strings.TrimSpace(matrix), "\n")
	if len(rows) != 7 {
		t.Fatalf("matrix has %d rows", len(rows))
	}
	n := 0
	for i, row := range rows {
		cells := strings.Fields(strings.SplitN(row, ":", 2)[1])
		for j, c := range cells {
			from, to := all[i], all[j]
			want := c == "y"
			t.Run(fmt.Sprintf("%s_to_%s", from, to), func(t *testing.T) {
				err := CanTransition(from, to)
				if (err == nil) != want {
					t.Fatalf("CanTransition(%s, %s) = %v, want allowed=%v", from, to, err, want)
				}
				if err != nil && !errors.Is(err, ErrTransition) {
					t.Fatalf("error %v does not wrap ErrTransition", err)
				}
				// Transition agrees with CanTransition (peer has full disclosure).
				p := fullPeer(t, from)
				q, terr := p.Transition(to, "why", t0.Add(1))
				if (terr == nil) != want {
					t.Fatalf("Transition(%s→%s) = %v, want allowed=%v", from, to, terr, want)
				}
				if terr == nil && q.Status != to {
					t.Fatalf("Transition gave status %s", q.Status)
				}
			})
			n++
		}
	}
	if n != 49 {
		t.Fatalf("tested %d pairs, want 49", n)
	}
	for _, bad := range []Status{"", "Active", "gone"} {
		if CanTransition(bad, StatusRevoked) == nil || CanTransition(StatusProposed, bad) == nil {
			t.Errorf("unknown status %q accepted", bad)
		}
	}
}

func TestTransitionEnrolledNeedsDisclosure(t *testing.T) {
	fields := []string{"operator_contact", "jurisdiction", "platform_version", "last_known_good_release", "data_residency"}
	clearField := map[string]func(*Peer){
		"operator_contact":        func(p *Peer) { p.OperatorContact = "" },
		"jurisdiction":            func(p *Peer) { p.Jurisdiction = " " },
		"platform_version":        func(p *Peer) { p.PlatformVersion = "" },
		"last_known_good_release": func(p *Peer) { p.LastKnownGoodRelease = "" },
		"data_residency":          func(p *Peer) { p.DataResidency = "" },
	}
	for _, f := range fields {
		t.Run(f, func(t *testing.T) {
			p := fullPeer(t, StatusAccepted)
			clearField[f](&p)
			_, err := p.Transition(StatusEnrolled, "", t0)
			if !errors.Is(err, ErrDisclosureMissing) || !strings.Contains(err.Error(), f) {
				t.Fatalf("Transition to enrolled without %s: %v", f, err)
			}
			for _, other := range fields {
				if other != f && strings.Contains(err.Error(), other) {
					t.Fatalf("error names %s, which is present: %v", other, err)
				}
			}
			// Proposed → accepted and suspend/revoke still work without it.
			if _, err := p.Transition(StatusSuspended, "x", t0); err != nil {
				t.Fatal(err)
			}
		})
	}
	p := NewPeer(fullPeer(t, StatusAccepted).ID, PeerKindPlatform, t0)
	q, err := p.Transition(StatusAccepted, "", t0)
	if err != nil {
		t.Fatalf("anonymous peer proposed→accepted: %v", err)
	}
	_, err = q.Transition(StatusEnrolled, "", t0)
	if err == nil || !strings.Contains(err.Error(), strings.Join(fields, ", ")) {
		t.Fatalf("all missing: %v", err)
	}
	if got := q.MissingDisclosure(); !cmp.Equal(got, fields) {
		t.Fatalf("MissingDisclosure = %v", got)
	}
}

func TestTransitionImmutableAndReasons(t *testing.T) {
	p := fullPeer(t, StatusActive)
	before := p.Clone()
	now := t0.Add(42)
	q, err := p.Transition(StatusSuspended, "compromise notice", now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, p); diff != "" {
		t.Fatalf("input peer mutated (-before +after):\n%s", diff)
	}
	if q.Metadata[MetaSuspensionReason] != "compromise notice" || !q.UpdatedAt.Equal(now) || q.ID != p.ID {
		t.Fatalf("suspended peer: %+v", q)
	}
	// Mutating the result does not reach the input either.
	q.Metadata["x"] = "y"
	q.VIPs[0] = "10.0.0.9/32"
	q.Capabilities.SchemaVersions["workload"][0] = "zz"
	if diff := cmp.Diff(before, p); diff != "" {
		t.Fatalf("result shares memory with input:\n%s", diff)
	}
	r, err := q.Transition(StatusRevoked, "operator ended peering", now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Metadata[MetaRevocationReason] != "operator ended peering" || r.Metadata[MetaSuspensionReason] != "compromise notice" {
		t.Fatalf("revoked metadata: %v", r.Metadata)
	}
	if r.ID != p.ID {
		t.Fatal("id rewritten")
	}
	// Nil metadata is handled.
	n := fullPeer(t, StatusActive)
	n.Metadata = nil
	if s, err := n.Transition(StatusSuspended, "r", now); err != nil || s.Metadata[MetaSuspensionReason] != "r" || n.Metadata != nil {
		t.Fatalf("nil metadata: %v %v %v", err, s.Metadata, n.Metadata)
	}
	// An empty reason removes a stale one.
	a, _ := q.Transition(StatusAccepted, "", now)
	s2, _ := a.Transition(StatusSuspended, "", now)
	if _, ok := s2.Metadata[MetaSuspensionReason]; ok {
		t.Fatalf("stale suspension_reason kept: %v", s2.Metadata)
	}
}

func TestReachableAndEvents(t *testing.T) {
	want := map[Status]struct {
		reach bool
		sev   Severity
	}{
		StatusProposed: {false, SeverityLow}, StatusAccepted: {false, SeverityLow},
		StatusEnrolled: {true, SeverityLow}, StatusActive: {true, SeverityLow},
		StatusDegraded: {true, SeverityMedium}, StatusSuspended: {false, SeverityMedium},
		StatusRevoked: {false, SeverityHigh},
	}
	for _, s := range Statuses() {
		p := Peer{Status: s}
		if p.Reachable() != want[s].reach || s.EventSeverity() != want[s].sev {
			t.Errorf("%s: reachable=%v severity=%s", s, p.Reachable(), s.EventSeverity())
		}
		if s.EventKind() != "federation.peer."+string(s) {
			t.Errorf("%s: event kind %s", s, s.EventKind())
		}
	}
}
