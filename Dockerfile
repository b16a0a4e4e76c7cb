# The one image of neutrino: the controller, the agent and the CNI plugin.
# docker build -t neutrino:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin neutrino --bin neutrino-cni

FROM debian:bookworm-slim
# The agent drives dnsmasq (and its dhcp_release), iptables, ipset, nft (the
# ports' guard in the bridges), conntrack (cutting connections a security
# group no longer allows) and (for the lab) iproute2.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates dnsmasq-base dnsmasq-utils iptables ipset nftables conntrack iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/neutrino /usr/local/bin/neutrino
# The CNI plugin, which the agent's init container copies onto the node.
COPY --from=build /src/target/release/neutrino-cni /usr/local/bin/neutrino-cni
ENTRYPOINT ["/usr/local/bin/neutrino"]
