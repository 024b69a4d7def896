%% Internal definitions shared by ws_port and ws_port_driver. Not a public
%% interface.

%% The public ETS table of connections, owned by ws_port_sup. One row per
%% connection that a driver knows of:
%%   {{DriverKey, Id}, Port, connecting | open | busy | closing, Active, Queue,
%%    MaxSize}
%%   (busy: open, but the port said {busy, Id}; senders wait for {ready, Id})
%% DriverKey is the driver's registered name, or its pid if it has none.
%% connecting also covers waiting to retry after a down event.
%% Active is the last {active, _} mode given (replayed if the port restarts).
%% Queue is true when the port keeps frames sent while not open
%% (send_queue > 0), so sends go to the port in every state but closing.
%% MaxSize is the connection's max_message_size: send/2 refuses larger
%% messages.
-define(WS_PORT_TAB, ws_port_conns).

%% persistent_term key of the default pool: {tuple of driver names, atomics}.
-define(WS_PORT_POOL, {ws_port, pool}).
