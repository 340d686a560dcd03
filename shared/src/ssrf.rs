//! Guard against server-side request forgery (SSRF) for outbound HTTP to URLs that
//! tenants give us: postback URLs and media URLs.
//!
//! Without a guard, a tenant could point a postback at `http://169.254.169.254/` (cloud
//! metadata), `http://localhost:6379/` (our Redis) or any other internal service, and
//! use our workers as a proxy into the private network. The guard has three layers:
//!
//! * [`check_url`] parses the URL, allows only `http`/`https`, checks IP-literal hosts
//!   directly and resolves host names, failing if *any* address is non-public. This gives
//!   a clear error that can be reported *before* anything is sent. Send the [`Url`] it
//!   returns, not the original string: the `url` crate normalises hosts such as
//!   `http://2130706433/` to `127.0.0.1`, and the check applies to that normalised form.
//! * [`GuardedResolver`] is the DNS resolver of [`guarded_client`]. It drops non-public
//!   addresses from every answer, so the client only connects to addresses that were
//!   checked at connect time. A name that resolved to a public address during
//!   [`check_url`] and to `127.0.0.1` a moment later (DNS rebinding) is still refused.
//! * IP literals never reach a resolver (hyper connects to them directly), which is why
//!   [`check_url`] must be called for every URL before it is sent with the client.
//!
//! The client never follows redirects: a redirect could lead to an unchecked URL, and for
//! postbacks a redirect counts as a failure anyway. It also ignores proxy environment
//! variables, since a proxy would do its own resolution and bypass the resolver.
//!
//! `allow_private = true` turns the address checks off (for development and tests
//! against local services); scheme checks stay on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connect timeout never exceeds this, whatever the overall request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Non-public IPv4 networks (IANA special-purpose registry and RFC 6890 et al.).
const V4_FORBIDDEN: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // CGNAT shared address space
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // TEST-NET-1
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, includes 255.255.255.255 broadcast
];

/// Non-public IPv6 networks. Everything outside 2000::/3 (global unicast) is refused
/// anyway, apart from the forms that embed an IPv4 address (see [`embedded_v4`]);
/// the entries outside 2000::/3 are listed for documentation.
const V6_FORBIDDEN: &[(Ipv6Addr, u32)] = &[
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // NAT64 local-use, not global
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),     // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),    // IETF protocol assignments, Teredo
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),    // documentation (RFC 9637)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),     // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),    // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),    // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),     // multicast
];

const V6_GLOBAL_UNICAST: (Ipv6Addr, u32) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Why a URL or address was refused.
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("URL scheme {0:?} is not allowed (only http and https)")]
    Scheme(String),
    #[error("address {ip} of {host} is not a public address")]
    Forbidden { host: String, ip: IpAddr },
    #[error("could not resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} resolved to no address")]
    NoAddress(String),
}

/// Whether `host` is a bare host name or address: nothing that would change what a URL
/// or a connection string means (`@ / # ?`, `\`, whitespace, control characters).
pub fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host
            .chars()
            .any(|c| matches!(c, '@' | '/' | '#' | '?' | '\\') || c.is_whitespace() || c.is_control())
}

/// True for every address that is not publicly routable: private, loopback, link-local,
/// shared, documentation, benchmarking, multicast and reserved ranges, and IPv6 forms
/// that embed such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

fn in_v4(ip: Ipv4Addr, (net, prefix): (Ipv4Addr, u32)) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, prefix): (Ipv6Addr, u32)) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    V4_FORBIDDEN.iter().any(|&net| in_v4(ip, net))
}

/// The IPv4 address carried by an IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96),
/// NAT64 well-known-prefix (64:ff9b::/96) or 6to4 (2002::/16) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    const LAST_32: &[(Ipv6Addr, u32)] = &[
        (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
        (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),
        (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
    ];
    const SIX_TO_FOUR: (Ipv6Addr, u32) = (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);
    let bits = u128::from(ip);
    // Truncating casts are intended: they pick out the embedded 32 bits.
    if LAST_32.iter().any(|&net| in_v6(ip, net)) {
        Some(Ipv4Addr::from(bits as u32))
    } else if in_v6(ip, SIX_TO_FOUR) {
        Some(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        None
    }
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return v4_forbidden(v4);
    }
    !in_v6(ip, V6_GLOBAL_UNICAST) || V6_FORBIDDEN.iter().any(|&net| in_v6(ip, net))
}

fn check_ip(host: &str, ip: IpAddr) -> Result<(), SsrfError> {
    if is_forbidden_ip(ip) {
        return Err(SsrfError::Forbidden {
            host: host.to_owned(),
            ip,
        });
    }
    Ok(())
}

/// The checks that need no DNS: the URL parses, its scheme is http or https, it has a
/// host and — unless `allow_private` — that host is neither a non-public IP literal nor a
/// name that is loopback by definition (`localhost`, `*.localhost`, RFC 6761). Cheap
/// enough for the ingest hot path, where it refuses such URLs before anything is stored;
/// [`check_url`] adds name resolution before anything is sent.
pub fn check_without_dns(url: &str, allow_private: bool) -> Result<Url, SsrfError> {
    let parsed = Url::parse(url).map_err(|e| SsrfError::InvalidUrl(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(SsrfError::Scheme(other.to_owned())),
    }
    let host = parsed
        .host()
        .ok_or_else(|| SsrfError::InvalidUrl("URL has no host".to_owned()))?;
    if allow_private {
        return Ok(parsed);
    }
    match host {
        Host::Ipv4(ip) => check_ip(&ip.to_string(), IpAddr::V4(ip))?,
        Host::Ipv6(ip) => check_ip(&ip.to_string(), IpAddr::V6(ip))?,
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(SsrfError::Forbidden {
                    host: name,
                    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                });
            }
        }
    }
    Ok(parsed)
}

/// Checks that `url` may be fetched: [`check_without_dns`], then — unless
/// `allow_private` — the host name is resolved and refused if *any* address is not
/// public. Send the returned [`Url`].
pub async fn check_url(url: &str, allow_private: bool) -> Result<Url, SsrfError> {
    let parsed = check_without_dns(url, allow_private)?;
    if allow_private {
        return Ok(parsed);
    }
    if let Some(Host::Domain(name)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|source| SsrfError::Resolve {
                host: name.to_owned(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(SsrfError::NoAddress(name.to_owned()));
        }
        for addr in &addrs {
            check_ip(name, addr.ip())?;
        }
    }
    Ok(parsed)
}

/// Resolves `host` and, unless `allow_private`, keeps only its public addresses.
async fn resolve_checked(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, SsrfError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|source| SsrfError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if allow_private {
        return if addrs.is_empty() {
            Err(SsrfError::NoAddress(host.to_owned()))
        } else {
            Ok(addrs)
        };
    }
    let (public, forbidden): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|addr| !is_forbidden_ip(addr.ip()));
    if !forbidden.is_empty() {
        tracing::warn!(host, ?forbidden, "dropped non-public addresses from DNS answer");
    }
    match (public.is_empty(), forbidden.first()) {
        (false, _) => Ok(public),
        (true, Some(first)) => Err(SsrfError::Forbidden {
            host: host.to_owned(),
            ip: first.ip(),
        }),
        (true, None) => Err(SsrfError::NoAddress(host.to_owned())),
    }
}

/// A [`reqwest`] DNS resolver that only ever hands out public addresses (unless
/// `allow_private`), so the connection goes to an address checked at connect time.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match resolve_checked(&host, allow_private).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(e) => Err(Box::new(e) as BoxError),
            }
        })
    }
}

/// An HTTP client for user-given URLs: resolves names through [`GuardedResolver`],
/// never follows redirects and ignores proxies. Fails only if `user_agent` is not a
/// valid header value or the TLS backend cannot be initialised.
pub fn guarded_client(allow_private: bool, timeout: Duration, user_agent: &str) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .pool_max_idle_per_host(64)
        .user_agent(user_agent)
        .build()
}

/// What user-given URLs may reach: the guard on (or off, `allow_private`), plus literal
/// `ip:port` exceptions an operator opted into (`LEADFLOW_ALLOW_PRIVATE_ADDRS`). The
/// exceptions never widen name resolution: a host *name* still has to resolve to public
/// addresses, so a DNS answer cannot turn into an exception.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_private: bool,
    pub exceptions: Arc<[SocketAddr]>,
}

impl Policy {
    pub fn new(allow_private: bool, exceptions: &[SocketAddr]) -> Self {
        Self {
            allow_private,
            exceptions: exceptions.into(),
        }
    }

    fn exception(&self, url: &str) -> Option<Url> {
        if self.exceptions.is_empty() {
            return None;
        }
        let parsed = Url::parse(url).ok()?;
        let ip = match parsed.host()? {
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
            Host::Domain(_) => return None,
        };
        let addr = SocketAddr::new(ip, parsed.port_or_known_default()?);
        (matches!(parsed.scheme(), "http" | "https") && self.exceptions.contains(&addr)).then_some(parsed)
    }

    /// [`check_without_dns`] under this policy.
    pub fn check_without_dns(&self, url: &str) -> Result<Url, SsrfError> {
        match self.exception(url) {
            Some(u) => Ok(u),
            None => check_without_dns(url, self.allow_private),
        }
    }

    /// The address to connect to for a mail server (SMTP, IMAP) at `host:port`, checked
    /// once: a literal address under the same rules as URLs (and the operator's
    /// exceptions), a name resolved once through the guard. Connect to the returned
    /// address and pass the name only for TLS (SNI, the certificate check): resolving it
    /// again at connect time would let a DNS answer that changed in between (rebinding)
    /// reach an internal service.
    pub async fn resolve_host(&self, host: &str, port: u16) -> Result<SocketAddr, SsrfError> {
        if !is_plain_host(host) {
            return Err(SsrfError::InvalidUrl(format!("{host:?} is not a host name")));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, port);
            if self.allow_private || self.exceptions.contains(&addr) {
                return Ok(addr);
            }
            check_ip(bare, ip)?;
            return Ok(addr);
        }
        self.check_without_dns(&format!("http://{bare}:{port}/"))?;
        let addrs = resolve_checked(bare, self.allow_private).await?;
        addrs
            .first()
            .map(|a| SocketAddr::new(a.ip(), port))
            .ok_or_else(|| SsrfError::NoAddress(bare.to_owned()))
    }

    /// [`check_url`] under this policy.
    pub async fn check_url(&self, url: &str) -> Result<Url, SsrfError> {
        match self.exception(url) {
            Some(u) => Ok(u),
            None => check_url(url, self.allow_private).await,
        }
    }
}

/// Like [`guarded_client`], but follows up to `max_redirects` redirects, checking every
/// hop's URL under `policy` before it is requested (names are then resolved through the
/// [`GuardedResolver`] as usual). For media downloads, where CDNs and signed-URL stores
/// redirect routinely; a hop to a private address ends the request with an error.
pub fn guarded_client_following(
    policy: Policy,
    max_redirects: usize,
    timeout: Duration,
    user_agent: &str,
) -> reqwest::Result<reqwest::Client> {
    let allow_private = policy.allow_private;
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            return attempt.error(format!("more than {max_redirects} redirects"));
        }
        match policy.check_without_dns(attempt.url().as_str()) {
            Ok(_) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    });
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
        .redirect(redirects)
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .pool_max_idle_per_host(64)
        .user_agent(user_agent)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden_ip(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn ipv4_non_public_ranges_are_forbidden() {
        for ip in concat!(
            "0.0.0.0 0.255.255.255 10.0.0.1 10.255.255.255 100.64.0.0 100.127.255.255 ",
            "127.0.0.1 127.255.255.254 169.254.0.1 169.254.169.254 172.16.0.1 ",
            "172.31.255.255 192.0.0.1 192.0.0.255 192.0.2.1 192.88.99.1 192.168.0.1 ",
            "192.168.255.255 198.18.0.1 198.19.255.255 198.51.100.7 203.0.113.9 ",
            "224.0.0.1 239.255.255.255 240.0.0.1 254.1.2.3 255.255.255.255 ",
        )
        .split_whitespace()
        {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
    }

    #[test]
    fn ipv4_public_addresses_are_allowed() {
        for ip in concat!(
            "8.8.8.8 1.1.1.1 9.9.9.9 11.0.0.1 100.63.255.255 100.128.0.0 ",
            "172.15.255.255 172.32.0.0 192.0.3.1 192.169.0.1 198.17.255.255 ",
            "198.20.0.0 223.1.2.3 ",
        )
        .split_whitespace()
        {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv6_non_public_ranges_are_forbidden() {
        for ip in concat!(
            ":: ::1 ::ffff:127.0.0.1 ::ffff:169.254.169.254 ::ffff:10.0.0.1 ",
            "::ffff:0:0 ::127.0.0.1 ::10.1.2.3 64:ff9b::a00:1 64:ff9b::7f00:1 ",
            "64:ff9b::a9fe:a9fe 64:ff9b:1::808:808 100::1 100::ffff:ffff:ffff:ffff ",
            "2001::1 2001:0:4136:e378:8000:63bf:3fff:fdd2 2001:1ff:ffff::1 ",
            "2001:db8::1 2001:db8:ffff:ffff::1 2002:7f00:0001:: 2002:a9fe:a9fe::1 ",
            "2002:c0a8:101::1 2002:a00:1:: 3fff::1 fc00::1 fd12:3456:789a::1 fe80::1 ",
            "febf:ffff::1 fec0::1 feff::1 ff02::1 ff05::1:3 ff0e::1 ::ffff:0:808:808 ",
            "4000::1 1234::1 ",
        )
        .split_whitespace()
        {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
    }

    #[test]
    fn ipv6_public_addresses_are_allowed() {
        for ip in concat!(
            "2606:4700:4700::1111 2001:4860:4860::8888 2a00:1450:4001::1 2001:200::1 ",
            "::ffff:8.8.8.8 ::8.8.8.8 64:ff9b::808:808 2002:808:808::1 2400:cb00::1 ",
        )
        .split_whitespace()
        {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    async fn refused(url: &str) -> SsrfError {
        match check_url(url, false).await {
            Ok(u) => panic!("{url} was accepted as {u}"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_mail_host_is_resolved_once_to_a_checked_address() {
        let guard = Policy::new(false, &[]);
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "localhost",
            "mail.localhost",
            "169.254.169.254",
        ] {
            assert!(guard.resolve_host(bad, 993).await.is_err(), "{bad}");
        }
        for malformed in [
            "user@10.0.0.1",
            "mail.example.com/x",
            "a#b",
            "a?b",
            "mail example.com",
            "",
            "a\\b",
        ] {
            assert!(
                matches!(guard.resolve_host(malformed, 25).await, Err(SsrfError::InvalidUrl(_))),
                "{malformed:?}"
            );
        }
        assert_eq!(
            guard.resolve_host("8.8.8.8", 587).await.unwrap(),
            "8.8.8.8:587".parse::<SocketAddr>().unwrap()
        );
        // Tests and dev reach loopback only when told to; an operator's exception is literal.
        let open = Policy::new(true, &[]);
        assert_eq!(open.resolve_host("localhost", 2525).await.unwrap().port(), 2525);
        let exception: SocketAddr = "10.0.0.5:993".parse().unwrap();
        let excepted = Policy::new(false, &[exception]);
        assert_eq!(excepted.resolve_host("10.0.0.5", 993).await.unwrap(), exception);
        assert!(excepted.resolve_host("10.0.0.5", 994).await.is_err());
    }

    #[tokio::test]
    async fn check_url_refuses_private_targets() {
        for url in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "https://[::ffff:127.0.0.1]:8443/x",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://10.0.0.5:6379/",
            "http://localhost/",
            "http://localhost:8080/postback?x=1",
        ] {
            let err = refused(url).await;
            assert!(matches!(err, SsrfError::Forbidden { .. }), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn check_url_refuses_bad_schemes_and_urls() {
        for url in ["ftp://example.com/file", "file:///etc/passwd", "gopher://example.com/"] {
            let err = refused(url).await;
            assert!(matches!(err, SsrfError::Scheme(_)), "{url}: {err}");
        }
        for url in ["not a url", "http://", "http://exa mple.com/"] {
            let err = refused(url).await;
            assert!(matches!(err, SsrfError::InvalidUrl(_)), "{url}: {err}");
        }
        let err = check_url("ftp://127.0.0.1/", true)
            .await
            .expect_err("ftp with allow_private");
        assert!(matches!(err, SsrfError::Scheme(_)), "{err}");
    }

    #[tokio::test]
    async fn check_url_accepts_public_literals_and_private_when_allowed() {
        let url = check_url("https://8.8.8.8/cb?id=1", false).await.expect("public v4");
        assert_eq!(url.host_str(), Some("8.8.8.8"));
        check_url("https://[2606:4700:4700::1111]/", false)
            .await
            .expect("public v6");
        for url in ["http://127.0.0.1:8080/x", "http://[::1]/", "http://localhost/"] {
            check_url(url, true).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[tokio::test]
    async fn resolver_drops_loopback_unless_allowed() {
        let err = resolve_checked("localhost", false)
            .await
            .expect_err("localhost refused");
        assert!(matches!(err, SsrfError::Forbidden { .. }), "{err}");
        let addrs = resolve_checked("localhost", true).await.expect("localhost allowed");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn guarded_client_does_not_connect_to_loopback_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let client = guarded_client(false, Duration::from_secs(5), "leadflow-test").expect("client");
        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .expect_err("request to localhost must fail");
        assert!(err.is_connect(), "{err:?}");
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        let mut found = false;
        while let Some(e) = source {
            found |= matches!(e.downcast_ref::<SsrfError>(), Some(SsrfError::Forbidden { .. }));
            source = e.source();
        }
        assert!(found, "no SsrfError::Forbidden in {err:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the listener accepted a connection");
    }

    #[tokio::test]
    async fn guarded_client_with_allow_private_reaches_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let client = guarded_client(true, Duration::from_secs(5), "leadflow-test").expect("client");
        let request = tokio::spawn(async move { client.get(format!("http://127.0.0.1:{port}/")).send().await });
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(matches!(accepted, Ok(Ok(_))), "no connection accepted");
        request.abort();
    }

    #[test]
    fn policy_exceptions_are_exact_literal_addresses() {
        let p = Policy::new(false, &["127.0.0.1:9000".parse().unwrap()]);
        assert!(p.check_without_dns("http://127.0.0.1:9000/a.png").is_ok());
        assert!(
            p.check_without_dns("http://127.0.0.1:9001/a.png").is_err(),
            "another port"
        );
        assert!(
            p.check_without_dns("http://127.0.0.2:9000/").is_err(),
            "another address"
        );
        assert!(
            p.check_without_dns("http://localhost:9000/").is_err(),
            "names are never exceptions"
        );
        assert!(
            p.check_without_dns("ftp://127.0.0.1:9000/").is_err(),
            "scheme still checked"
        );
    }
}
