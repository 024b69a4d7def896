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

%% The public ETS table of ws_port_client processes being closed, owned by
%% ws_port_sup: {Pid, Closers}, a row while ws_port_client:close/1 waits for
%% the local client Pid. The client drops the frames it still holds (not
%% handled) once it sees its row, so that close/1 does not wait for every
%% frame already in its mailbox to go through handle_frame.
-define(WS_PORT_CLOSING, ws_port_closing).

%% persistent_term key of the default pool: {tuple of driver names, atomics}.
-define(WS_PORT_POOL, {ws_port, pool}).
