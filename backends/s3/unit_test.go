package s3

import (
	"io/fs"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name, in    string
		bucket, pfx string
		wantErr     bool
	}{
		{name: "BucketOnly", in: "s3://bkt", bucket: "bkt"},
		{name: "BucketSlash", in: "s3://bkt/", bucket: "bkt"},
		{name: "Prefix", in: "s3://bkt/a/b", bucket: "bkt", pfx: "a/b"},
		{name: "PrefixTrailingSlash", in: "s3://bkt/a/b/", bucket: "bkt", pfx: "a/b"},
		{name: "Escaped", in: "s3://bkt/with%20space", bucket: "bkt", pfx: "with space"},
		{name: "DotDot", in: "s3://bkt/a/../b", wantErr: true},
		{name: "DoubleSlash", in: "s3://bkt/a//b", wantErr: true},
		{name: "NoBucket", in: "s3:///a", wantErr: true},
		{name: "WrongScheme", in: "sftp://bkt/a", wantErr: true},
		{name: "Credentials", in: "s3://key:secret@bkt/a", wantErr: true},
		{name: "Query", in: "s3://bkt/a?x=1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseURL(%q) = %+v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got.Bucket != tt.bucket || got.Prefix != tt.pfx {
				t.Fatalf("ParseURL(%q) = %+v, %v; want bucket %q prefix %q", tt.in, got, err, tt.bucket, tt.pfx)
			}
			if again, err := ParseURL(got.String()); err != nil || again != got {
				t.Errorf("round trip through %q gave %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestMtimeFormat(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"Nanoseconds", time.Unix(1614834367, 123456789), "1614834367.123456789"},
		{"WholeSecond", time.Unix(1000000000, 0), "1000000000.000000000"},
		{"Epoch", time.Unix(0, 0), "0.000000000"},
		{"BeforeEpochFraction", time.Unix(-2, 750000000), "-1.250000000"},
		{"BeforeEpochWhole", time.Unix(-5, 0), "-5.000000000"},
		{"Far", time.Date(2100, 1, 1, 0, 0, 0, 1, time.UTC), "4102444800.000000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatMtime(tt.t)
			if got != tt.want {
				t.Errorf("formatMtime(%v) = %q, want %q", tt.t, got, tt.want)
			}
			back, err := parseMtime(got)
			if err != nil || !back.Equal(tt.t) {
				t.Errorf("parseMtime(%q) = %v, %v; want %v", got, back, err, tt.t)
			}
		})
	}
	for _, in := range []string{"1614834367", "1614834367.5", "1614834367.1234567891"} {
		if _, err := parseMtime(in); err != nil {
			t.Errorf("parseMtime(%q): %v", in, err)
		}
	}
	for _, in := range []string{"", "x", "1.x"} {
		if _, err := parseMtime(in); err == nil {
			t.Errorf("parseMtime(%q) succeeded", in)
		}
	}
}

func TestModeFormat(t *testing.T) {
	for _, m := range []fs.FileMode{0o644, 0o600, 0o755, 0o4755 & fs.ModePerm, 0} {
		got, ok := parseMode(formatMode(m))
		if !ok || got != m {
			t.Errorf("mode %v came back as %v, %v", m, got, ok)
		}
	}
}

func TestPartSize(t *testing.T) {
	b := &Backend{cfg: Config{PartSize: 8 << 20}.withDefaults()}
	tests := []struct {
		name     string
		size     int64
		wantPart int64
	}{
		{"Small", 100 << 20, 8 << 20},
		{"AtLimit", 8 << 20 * maxParts, 8 << 20},
		{"JustOver", 8<<20*maxParts + 1, 9 << 20},
		{"5TB", 5 << 40, 525 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := b.partSize(tt.size)
			if ps != tt.wantPart {
				t.Errorf("partSize(%d) = %d, want %d", tt.size, ps, tt.wantPart)
			}
			if n := (tt.size + ps - 1) / ps; n > maxParts {
				t.Errorf("%d parts, more than %d", n, maxParts)
			}
		})
	}
	if got := (Config{PartSize: 1 << 20}).withDefaults().PartSize; got != minPartSize {
		t.Errorf("a 1 MiB part size is raised to %d, want S3's minimum %d", got, minPartSize)
	}
}
