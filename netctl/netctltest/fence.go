package netctltest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/powernode/fedgate/netctl"
)

// Fence returns the host's netctl.Fence view: it keeps the claims of the
// last Set (fault op "fence-set", object: the claimed addresses joined by
// ","; "fence-remove" for Remove) and journals what changed.
func (h *Host) Fence() netctl.Fence { return (*fakeFence)(h) }

// Claims returns the fence's claims, sorted by address.
func (h *Host) Claims() []netctl.Claim {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]netctl.Claim, 0, len(h.claims))
	for _, c := range h.claims {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b netctl.Claim) int { return a.Addr.Compare(b.Addr) })
	return out
}

// RenderFence prints one line per claim: the address and either "answered
// on <link>" with the deadline relative to now ("until=+2s", "until=-" for
// none), or "fenced only".
func (h *Host) RenderFence(now time.Time) string {
	var b strings.Builder
	for _, c := range h.Claims() {
		if c.Link.Index == 0 {
			fmt.Fprintf(&b, "fence %s fenced only\n", c.Addr)
			continue
		}
		until := "-"
		if !c.Until.IsZero() {
			until = "+" + c.Until.Sub(now).String()
		}
		fmt.Fprintf(&b, "fence %s answered on %s until=%s\n", c.Addr, c.Link.Name, until)
	}
	return b.String()
}

// StartJournal starts recording, in order, address adds and deletes (and
// outside removals), announcements and fence changes; Journal returns them.
func (h *Host) StartJournal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.journalOn, h.journal = true, nil
}

// Journal returns the events recorded since StartJournal.
func (h *Host) Journal() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.journal...)
}

// logf journals an event (called with h.mu held).
func (h *Host) logf(format string, args ...any) {
	if h.journalOn {
		h.journal = append(h.journal, fmt.Sprintf(format, args...))
	}
}

type fakeFence Host

func (f *fakeFence) Set(claims []netctl.Claim) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	addrs := make([]string, len(claims))
	for i, c := range claims {
		addrs[i] = c.Addr.String()
	}
	if err := h.check("fence-set", strings.Join(addrs, ",")); err != nil {
		return err
	}
	next := make(map[netip.Addr]netctl.Claim, len(claims))
	for _, c := range claims {
		if _, dup := next[c.Addr]; dup {
			return fmt.Errorf("fence: %s claimed twice", c.Addr)
		}
		next[c.Addr] = c
		prev, had := h.claims[c.Addr]
		if !had {
			h.logf("fence +%s", c.Addr)
		}
		switch {
		case c.Link.Index != 0 && (!had || prev.Link.Index != c.Link.Index):
			h.logf("answer %s on %s", c.Addr, c.Link.Name)
		case c.Link.Index == 0 && had && prev.Link.Index != 0:
			h.logf("silence %s", c.Addr)
		}
	}
	var gone []netip.Addr
	for a := range h.claims {
		if _, ok := next[a]; !ok {
			gone = append(gone, a)
		}
	}
	slices.SortFunc(gone, netip.Addr.Compare)
	for _, a := range gone {
		if h.claims[a].Link.Index != 0 {
			h.logf("silence %s", a)
		}
		h.logf("fence -%s", a)
	}
	h.claims = next
	return nil
}

func (f *fakeFence) Remove() error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("fence-remove", ""); err != nil {
		return err
	}
	h.claims = nil
	h.logf("fence removed")
	return nil
}

func (f *fakeFence) Close() error { return nil }
