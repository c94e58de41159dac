// Package getopt parses a command line the way GNU getopt_long does, for
// the two command lines nsgate answers to (slirp4netns's and pasta's): long
// options with "=VALUE" or a separate argument, unambiguous prefixes of
// long options, clusters of short options ("-c6", "-e3"), and "--". Its
// messages are getopt's, so that callers see the errors the C tools print.
package getopt

import (
	"fmt"
	"strings"
)

// Option describes one command-line option of a command whose parsed form
// is T.
type Option[T any] struct {
	Long    string
	Short   byte // 0 if none
	HasArg  bool
	Handler func(c *T, val string) error
}

// Result is what Parse leaves over: the operands, and the command after
// "--" (or, with StopAtOperand, from the first operand on).
type Result struct {
	Operands []string
	Command  []string
	DashDash bool // "--" was given
}

// Mode says how a command treats operands and errors.
type Mode struct {
	// StopAtOperand makes the first operand and everything after it the
	// command (getopt's "+"); otherwise options and operands may be mixed
	// (getopt's permutation).
	StopAtOperand bool
	// StopAtError returns at the first bad option, as pasta exits there;
	// otherwise Parse goes on, so that a later --help or --version still
	// counts, as with slirp4netns.
	StopAtError bool
}

// Parse parses args, and returns the first error.
func Parse[T any](c *T, opts []Option[T], args []string, mode Mode) (r Result, firstErr error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			r.DashDash, r.Command = true, args[i+1:]
			return r, firstErr
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			if mode.StopAtOperand {
				r.Command = args[i:]
				return r, firstErr
			}
			r.Operands = append(r.Operands, a)
			continue
		}
		if err := parseOne(c, opts, args, &i); err != nil && firstErr == nil {
			firstErr = err
			if mode.StopAtError {
				return r, err
			}
		}
	}
	return r, firstErr
}

// parseOne parses the option args[*i], advancing *i past a separate
// argument.
func parseOne[T any](c *T, opts []Option[T], args []string, i *int) error {
	a := args[*i]
	if strings.HasPrefix(a, "--") {
		name, val, hasVal := strings.Cut(a[2:], "=")
		o, err := findLong(opts, name)
		if err != nil {
			return err
		}
		if !o.HasArg {
			if hasVal {
				return fmt.Errorf("option '--%s' doesn't allow an argument", o.Long)
			}
			return o.Handler(c, "")
		}
		if !hasVal {
			if *i+1 >= len(args) {
				return fmt.Errorf("option '--%s' requires an argument", o.Long)
			}
			*i++
			val = args[*i]
		}
		return o.Handler(c, val)
	}
	// A cluster of short options: "-c6", "-e3", "-e 3".
	for j := 1; j < len(a); j++ {
		o := findShort(opts, a[j])
		if o == nil {
			return fmt.Errorf("invalid option -- '%c'", a[j])
		}
		if !o.HasArg {
			if err := o.Handler(c, ""); err != nil {
				return err
			}
			continue
		}
		val := a[j+1:]
		if val == "" {
			if *i+1 >= len(args) {
				return fmt.Errorf("option requires an argument -- '%c'", a[j])
			}
			*i++
			val = args[*i]
		}
		return o.Handler(c, val)
	}
	return nil
}

// findLong resolves a long option name, accepting unambiguous prefixes as
// getopt_long does ("--conf" for "--configure").
func findLong[T any](opts []Option[T], name string) (*Option[T], error) {
	var match *Option[T]
	for i := range opts {
		o := &opts[i]
		if o.Long == name {
			return o, nil
		}
		if strings.HasPrefix(o.Long, name) && name != "" {
			if match != nil {
				return nil, fmt.Errorf("option '--%s' is ambiguous", name)
			}
			match = o
		}
	}
	if match == nil {
		return nil, fmt.Errorf("unrecognized option '--%s'", name)
	}
	return match, nil
}

func findShort[T any](opts []Option[T], c byte) *Option[T] {
	for i := range opts {
		if opts[i].Short == c && c != 0 {
			return &opts[i]
		}
	}
	return nil
}
