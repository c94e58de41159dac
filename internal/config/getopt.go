package config

import (
	"fmt"
	"strings"
)

// option describes one command-line option in getopt_long's terms.
type option struct {
	long    string
	short   byte // 0 if none
	hasArg  bool
	handler func(c *Config, val string) error
}

// parseArgs splits args like GNU getopt_long with permutation: options and
// operands may be mixed, "--" ends option parsing and everything after it is
// the command to spawn. It returns the operands before "--", the command,
// and the first error; it parses on after an error so that a later --help
// still counts, as with slirp4netns.
func parseArgs(c *Config, opts []option, args []string) (operands, command []string, firstErr error) {
	for i := 0; i < len(args); i++ {
		if err := parseOne(c, opts, args, &i, &operands); err != nil && firstErr == nil {
			firstErr = err
		}
		if c.Spawn {
			return operands, args[i+1:], firstErr
		}
	}
	return operands, nil, firstErr
}

// parseOne parses args[*i], advancing *i past an option's separate argument.
func parseOne(c *Config, opts []option, args []string, i *int, operands *[]string) error {
	a := args[*i]
	switch {
	case a == "--":
		c.Spawn = true
	case strings.HasPrefix(a, "--"):
		name, val, hasVal := strings.Cut(a[2:], "=")
		o, err := findLong(opts, name)
		if err != nil {
			return err
		}
		if !o.hasArg {
			if hasVal {
				return fmt.Errorf("option '--%s' doesn't allow an argument", o.long)
			}
			return o.handler(c, "")
		}
		if !hasVal {
			if *i+1 >= len(args) {
				return fmt.Errorf("option '--%s' requires an argument", o.long)
			}
			*i++
			val = args[*i]
		}
		return o.handler(c, val)
	case len(a) > 1 && a[0] == '-':
		// A cluster of short options: "-c6", "-e3", "-e 3".
		for j := 1; j < len(a); j++ {
			o := findShort(opts, a[j])
			if o == nil {
				return fmt.Errorf("invalid option -- '%c'", a[j])
			}
			if !o.hasArg {
				if err := o.handler(c, ""); err != nil {
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
			return o.handler(c, val)
		}
	default:
		*operands = append(*operands, a)
	}
	return nil
}

// findLong resolves a long option name, accepting unambiguous prefixes as
// getopt_long does ("--conf" for "--configure").
func findLong(opts []option, name string) (*option, error) {
	var match *option
	for i := range opts {
		o := &opts[i]
		if o.long == name {
			return o, nil
		}
		if strings.HasPrefix(o.long, name) && name != "" {
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

func findShort(opts []option, c byte) *option {
	for i := range opts {
		if opts[i].short == c && c != 0 {
			return &opts[i]
		}
	}
	return nil
}
