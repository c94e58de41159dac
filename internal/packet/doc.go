// Package packet provides zero-allocation views over raw frame bytes:
// Ethernet, ARP, IPv4, UDP and ICMPv4 headers as []byte types with
// accessors, a single-pass decoder, and the Internet checksum.
//
// Every frame comes from the untrusted namespace, so every accessor assumes
// only what the matching Valid/Decode step checked: the decoder checks each
// length before any view is used, and accessors never read past the slice.
package packet
