#ifndef EDGEPROXY_CHIREDIS_SHIM_H
#define EDGEPROXY_CHIREDIS_SHIM_H
// hiredis 0.14.1 (Debian libhiredis-dev): blocking API only. The variadic redisCommand does not import into
// Swift; ProxyTicketStore uses redisCommandArgv (binary safe).
#include <hiredis/hiredis.h>
#endif
