package federation

import (
	"errors"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"1.4.2", Version{Major: 1, Minor: 4, Patch: 2}, true},
		{"v2.0.0", Version{Major: 2}, true},
		{"1.0.0-rc.1+build.5", Version{Major: 1, Pre: "rc.1", Build: "build.5"}, true},
		{"1.0.0-alpha-1", Version{Major: 1, Pre: "alpha-1"}, true},
		{"1.0.0+007", Version{Major: 1, Build: "007"}, true},
		{"1.4", Version{}, false},
		{"01.4.2", Version{}, false},
		{"1.4.2.3", Version{}, false},
		{"1.-4.2", Version{}, false},
		{"1.4.2-", Version{}, false},
		{"1.4.2-01", Version{}, false},
		{"1.4.2-a..b", Version{}, false},
		{"1.4.2+", Version{}, false},
		{"1.4.x", Version{}, false},
		{"", Version{}, false},
		{"vv1.0.0", Version{}, false},
		{"99999999999999999999.0.0", Version{}, false},
		{strings.Repeat("1", 200), Version{}, false},
	} {
		got, err := ParseVersion(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseVersion(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrVersionFormat) {
			t.Errorf("ParseVersion(%q) error does not wrap ErrVersionFormat", tc.in)
		}
	}
}

func TestCompatibleVersions(t *testing.T) {
	for _, tc := range []struct {
		ours, theirs string
		ok           bool
	}{
		{"1.4.0", "1.4.9", true},
		{"1.4.0", "1.3.0", true},  // N-1
		{"1.3.0", "1.4.0", true},  // N+1
		{"1.4.0", "1.2.9", false}, // N-2
		{"1.2.0", "1.4.0", false},
		{"2.0.0", "1.9.0", false}, // major
		{"1.0.0", "2.0.0", false},
		{"1.4.0-rc.1", "1.5.0", true},
		{"1.4.0", "bogus", false},
	} {
		err := CompatibleVersions(tc.ours, tc.theirs)
		if (err == nil) != tc.ok {
			t.Errorf("CompatibleVersions(%s, %s) = %v, want ok=%v", tc.ours, tc.theirs, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), tc.ours) || !strings.Contains(err.Error(), tc.theirs)) {
			t.Errorf("error does not name both versions: %v", err)
		}
	}
	if err := CompatibleVersions("1.4.0", "1.2.0"); !errors.Is(err, ErrIncompatibleVersion) {
		t.Fatalf("N-2: %v", err)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.4.2", "v1.0.0-rc.1+b.2", "0.0.0", "1.2", "01.2.3", "1.2.3-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// Canonical form re-parses to the same value; compatibility is
		// symmetric and reflexive.
		w, err := ParseVersion(v.String())
		if err != nil || w != v {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, v, v.String(), w, err)
		}
		if CompatibleVersions(s, s) != nil {
			t.Fatalf("%q incompatible with itself", s)
		}
		o := Version{Major: v.Major, Minor: v.Minor + 2}.String()
		if (CompatibleVersions(s, o) == nil) || (CompatibleVersions(o, s) == nil) {
			t.Fatalf("%q compatible with %q", s, o)
		}
	})
}
