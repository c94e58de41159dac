// Package packet provides zero-allocation views over raw frame bytes, in
// the style of gVisor's tcpip/header: Ethernet, ARP, IPv4, TCP, UDP and
// ICMPv4 headers as []byte types with accessors and named field offsets,
// encoder structs (IPv4Fields, TCPFields, ...) that write a header in one
// call, a single-pass decoder, the Internet checksum, and Addr, the address
// type of the whole data path.
//
// Every frame comes from the untrusted namespace, so every accessor assumes
// only what the matching Valid/Decode step checked: the decoder checks each
// length before any view is used, and accessors never read past the slice.
package packet
