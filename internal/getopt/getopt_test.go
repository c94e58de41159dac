package getopt

import (
	"slices"
	"strings"
	"testing"
)

type cmdline struct {
	verbose bool
	port    string
}

var opts = []Option[cmdline]{
	{Long: "verbose", Short: 'v', Handler: func(c *cmdline, _ string) error { c.verbose = true; return nil }},
	{Long: "port", Short: 'p', HasArg: true, Handler: func(c *cmdline, v string) error { c.port = v; return nil }},
	{Long: "ports-all", Handler: func(*cmdline, string) error { return nil }},
}

func TestParse(t *testing.T) {
	tests := []struct {
		args     []string
		mode     Mode
		port     string
		operands []string
		command  []string
		err      string
	}{
		{[]string{"-vp80", "x"}, Mode{}, "80", []string{"x"}, nil, ""},
		{[]string{"x", "--port=81", "y", "--", "sh", "-c"}, Mode{}, "81", []string{"x", "y"}, []string{"sh", "-c"}, ""},
		{[]string{"--port", "82", "cmd", "--port", "83"}, Mode{StopAtOperand: true}, "82", nil, []string{"cmd", "--port", "83"}, ""},
		{[]string{"--verb"}, Mode{}, "", nil, nil, ""},
		{[]string{"--po=1"}, Mode{}, "", nil, nil, "option '--po' is ambiguous"},
		{[]string{"--bogus", "--port=9"}, Mode{}, "9", nil, nil, "unrecognized option '--bogus'"},
		{[]string{"--bogus", "--port=9"}, Mode{StopAtError: true}, "", nil, nil, "unrecognized option '--bogus'"},
		{[]string{"-x"}, Mode{}, "", nil, nil, "invalid option -- 'x'"},
		{[]string{"-p"}, Mode{}, "", nil, nil, "option requires an argument -- 'p'"},
		{[]string{"--verbose=1"}, Mode{}, "", nil, nil, "doesn't allow an argument"},
	}
	for _, tt := range tests {
		var c cmdline
		r, err := Parse(&c, opts, tt.args, tt.mode)
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) || tt.err == "" && err != nil {
			t.Errorf("%q: error %v, want %q", tt.args, err, tt.err)
		}
		if c.port != tt.port || !slices.Equal(r.Operands, tt.operands) || !slices.Equal(r.Command, tt.command) {
			t.Errorf("%q: port %q operands %q command %q; want %q %q %q", tt.args, c.port, r.Operands, r.Command, tt.port, tt.operands, tt.command)
		}
	}
}
