//! The `connect` mode of the load generator: a listener on 127.0.0.1 in a network namespace
//! of the generator's own, and one connect+accept+close per op.
use std::io::Error;

pub struct Listener {
    fd: libc::c_int,
    addr: libc::sockaddr_in,
}

/// `-1` as the errno it stands for.
fn check(r: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if r < 0 {
        Err(format!("{what}: {}", Error::last_os_error()))
    } else {
        Ok(r)
    }
}

/// Brings `lo` up in the current network namespace (SIOCGIFFLAGS / SIOCSIFFLAGS).
fn loopback_up() -> Result<(), String> {
    // ifreq: the name, then the flags (a short) at offset 16.
    let mut ifr = [0u8; 40];
    ifr[..2].copy_from_slice(b"lo");
    // SAFETY: a socket of our own and an ifreq-sized buffer that outlives the calls.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0), "socket")?;
        let r = check(libc::ioctl(fd, libc::SIOCGIFFLAGS, ifr.as_mut_ptr()), "SIOCGIFFLAGS lo").and_then(|_| {
            let flags = i16::from_ne_bytes([ifr[16], ifr[17]]) | libc::IFF_UP as i16;
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            check(libc::ioctl(fd, libc::SIOCSIFFLAGS, ifr.as_mut_ptr()), "SIOCSIFFLAGS lo")
        });
        libc::close(fd);
        r.map(|_| ())
    }
}

impl Listener {
    /// Unshares the network namespace, brings up its loopback and listens on 127.0.0.1:<any>.
    pub fn in_own_netns() -> Result<Self, String> {
        // SAFETY: unshare of this process's own network namespace.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) }, "unshare(CLONE_NEWNET) (needs root)")?;
        loopback_up()?;
        // SAFETY: plain socket calls on a socket of our own and a sockaddr_in of the right size.
        unsafe {
            let fd = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0), "socket")?;
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            check(libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len), "bind 127.0.0.1:0")?;
            check(libc::listen(fd, 1024), "listen")?;
            let mut got = len;
            check(libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut got), "getsockname")?;
            Ok(Listener { fd, addr })
        }
    }

    /// One connection: socket, connect, accept, close the client with a reset, close the
    /// accepted end.
    pub fn connect_close(&self) -> Result<(), String> {
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: sockets of our own; every pointer is to a live value of the size passed.
        unsafe {
            let c = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0), "socket")?;
            let r = check(
                libc::setsockopt(
                    c,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                ),
                "SO_LINGER",
            )
            .and_then(|_| check(libc::connect(c, (&self.addr as *const libc::sockaddr_in).cast(), len), "connect"))
            .and_then(|_| {
                check(libc::accept4(self.fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC), "accept")
            });
            libc::close(c);
            libc::close(r?);
        }
        Ok(())
    }
}
