/**
 * Ports for tests. Every server a test starts binds port 0 on the exact address it uses; a test
 * never picks a port it found free (another file may take it in between).
 */

/**
 * A port on which nothing listens, TCP or UDP, on any loopback address: 1 (tcpmux) is below the
 * ephemeral range, so no test's port-0 bind can take it; a TCP connection to it is refused and a
 * UDP datagram answered with ICMP port-unreachable at once.
 */
export const CLOSED_PORT = 1;
