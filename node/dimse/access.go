package dimse

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Caller is one entry of a Server's allowed callers: an AE title at a
// host. Host is "*" (any address), an IP address, a CIDR prefix, or a host
// name (resolved when an association arrives).
type Caller struct {
	AETitle string
	Host    string

	any    bool
	addr   netip.Addr
	prefix netip.Prefix
}

// ParseCaller parses "AE@host".
func ParseCaller(s string) (Caller, error) {
	s = strings.TrimSpace(s)
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return Caller{}, fmt.Errorf("dimse: allowed caller %q: want AE@host (host: an address, a CIDR prefix, a name, or * for any)", s)
	}
	c := Caller{AETitle: strings.TrimSpace(s[:i]), Host: strings.TrimSpace(s[i+1:])}
	if err := checkAETitle(c.AETitle); err != nil {
		return Caller{}, fmt.Errorf("dimse: allowed caller %q: %w", s, err)
	}
	switch {
	case c.Host == "*":
		c.any = true
	case strings.Contains(c.Host, "/"):
		p, err := netip.ParsePrefix(c.Host)
		if err != nil {
			return Caller{}, fmt.Errorf("dimse: allowed caller %q: bad CIDR prefix: %w", s, err)
		}
		c.prefix = p.Masked()
	default:
		if a, err := netip.ParseAddr(strings.Trim(c.Host, "[]")); err == nil {
			c.addr = a.Unmap()
		}
	}
	return c, nil
}

// ParseCallers parses a comma-separated list of "AE@host" entries.
func ParseCallers(s string) ([]Caller, error) {
	var out []Caller
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		c, err := ParseCaller(f)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (c Caller) String() string { return c.AETitle + "@" + c.Host }

// matches reports whether ae at ip is this caller. Host names are resolved
// with resolve (bounded by ctx).
func (c Caller) matches(ctx context.Context, ae string, ip netip.Addr, resolve func(context.Context, string) ([]netip.Addr, error)) bool {
	if ae != c.AETitle {
		return false
	}
	switch {
	case c.any:
		return true
	case c.prefix.IsValid():
		return c.prefix.Contains(ip)
	case c.addr.IsValid():
		return c.addr == ip
	}
	addrs, err := resolve(ctx, c.Host)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.Unmap() == ip {
			return true
		}
	}
	return false
}

func resolveHost(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Destination is a C-MOVE destination: an AE title and where it listens.
type Destination struct {
	AETitle string
	Addr    string // host:port
}

// ParseDestinations parses a comma-separated list of "AE=host:port".
func ParseDestinations(s string) ([]Destination, error) {
	var out []Destination
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ae, addr, ok := strings.Cut(f, "=")
		ae, addr = strings.TrimSpace(ae), strings.TrimSpace(addr)
		if !ok {
			return nil, fmt.Errorf("dimse: destination %q: want AE=host:port", f)
		}
		if err := checkAETitle(ae); err != nil {
			return nil, fmt.Errorf("dimse: destination %q: %w", f, err)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, fmt.Errorf("dimse: destination %q: want AE=host:port: %v", f, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("dimse: destination %q: bad port %q", f, port)
		}
		out = append(out, Destination{AETitle: ae, Addr: addr})
	}
	return out, nil
}
