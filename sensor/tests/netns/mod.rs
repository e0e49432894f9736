//! Test helpers shared by the sensor tests that run a helper in its own network namespace.

/// Brings `lo` up in the current network namespace (SIOCGIFFLAGS / SIOCSIFFLAGS).
pub fn loopback_up() -> bool {
    // ifreq: the name, then the flags (a short) at offset 16.
    let mut ifr = [0u8; 40];
    ifr[..2].copy_from_slice(b"lo");
    // SAFETY: a socket of our own and an ifreq-sized buffer that outlives the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 || libc::ioctl(fd, libc::SIOCGIFFLAGS, ifr.as_mut_ptr()) != 0 {
            return false;
        }
        let flags = i16::from_ne_bytes([ifr[16], ifr[17]]) | libc::IFF_UP as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        let ok = libc::ioctl(fd, libc::SIOCSIFFLAGS, ifr.as_mut_ptr()) == 0;
        libc::close(fd);
        ok
    }
}
