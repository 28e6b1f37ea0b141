package federation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNewIDIsCanonicalV7(t *testing.T) {
	r := &seqReader{}
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		id := mustID(t, r, at)
		if err := ParseID(id); err != nil {
			t.Fatalf("NewID produced %q: %v", id, err)
		}
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("google/uuid disagrees on %q: %v %v %v", id, err, u.Version(), u.Variant())
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		got, err := IDTime(id)
		if err != nil || !got.Equal(at) {
			t.Fatalf("IDTime(%q) = %v, %v; want %v", id, got, err, at)
		}
	}
	// The same inputs give the same id (deterministic in tests).
	a, _ := NewID(t0, &seqReader{})
	b, _ := NewID(t0, &seqReader{})
	if a != b {
		t.Fatalf("NewID not deterministic: %q vs %q", a, b)
	}
}

func TestNewIDShortRandom(t *testing.T) {
	if _, err := NewID(t0, strings.NewReader("short")); err == nil {
		t.Fatal("NewID accepted a short random source")
	}
}

func TestParseID(t *testing.T) {
	v7 := uuid.Must(uuid.NewV7()).String()
	v4 := uuid.Must(uuid.NewRandom()).String()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{v7, true},
		{"019abc12-3456-7def-8123-456789abcdef", true},
		{"019abc12-3456-7def-b123-456789abcdef", true},
		{v4, false},
		{strings.ToUpper(v7), false},
		{"{" + v7 + "}", false},
		{"urn:uuid:" + v7, false},
		{strings.ReplaceAll(v7, "-", ""), false},
		{"019abc12-3456-7def-c123-456789abcdef", false}, // variant
		{"019abc12-3456-7def-8123-456789abcdeg", false},
		{"019abc12+3456-7def-8123-456789abcdef", false},
		{"", false},
		{v7 + " ", false},
	} {
		err := ParseID(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseID(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) error %v does not wrap ErrInvalidID", tc.in, err)
		}
	}
	if err := ParseUUID(v4); err != nil {
		t.Errorf("ParseUUID(v4) = %v", err)
	}
}

func FuzzParseID(f *testing.F) {
	f.Add("019abc12-3456-7def-8123-456789abcdef")
	f.Add("019ABC12-3456-7def-8123-456789abcdef")
	f.Add("")
	f.Add("00000000-0000-0000-0000-000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		err := ParseID(s)
		if err != nil {
			return
		}
		// Accepted ids are canonical: google/uuid agrees and round-trips
		// to the identical string (never rewritten).
		u, perr := uuid.Parse(s)
		if perr != nil || u.Version() != 7 || u.String() != s {
			t.Fatalf("ParseID accepted %q but uuid says %v %v %q", s, perr, u.Version(), u.String())
		}
		if _, err := IDTime(s); err != nil {
			t.Fatal(err)
		}
	})
}
