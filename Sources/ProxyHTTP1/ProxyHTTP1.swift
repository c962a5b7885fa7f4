// ProxyHTTP1: placeholder until its first real file lands.
