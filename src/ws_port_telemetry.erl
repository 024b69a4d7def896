%% @doc Telemetry shim: calls `telemetry:execute/3' when the telemetry
%% library is present, and does nothing otherwise. ws_port has no hard
%% dependency on telemetry (see the README's Install section).
%%
%% Events emitted by {@link ws_port_driver}. Every event's metadata has
%% `conn' (the connection handle), `driver', `id' and `url'; `duration' is
%% in native time units (`erlang:convert_time_unit/3').
%% <ul>
%% <li>`[ws_port, connection, up]': a handshake succeeded (the first one or
%%     a reconnection). Measurements `#{count => 1, attempt, duration}':
%%     `attempt' is the number of the attempt that succeeded since the last
%%     `up' (1 = at the first try), `duration' the time since the connect
%%     command or the previous failed attempt. Metadata adds `replay'
%%     (true after a port program restart).</li>
%% <li>`[ws_port, connection, down]': the connection was lost or an
%%     attempt failed, and it will be tried again. Measurements
%%     `#{count => 1, duration}' (time since the connect command or the
%%     previous failed attempt). Metadata adds `reason',
%%     `attempt' (the number of the failed attempt since the last `up', from
%%     1), `delay_ms' (the delay before the next attempt, the one
%%     `retry_fun' chose, or `manual'), `unsent_bytes' and `info' (the port
%%     program's `#{attempt, delay_ms, unsent_bytes}'). A port program
%%     restart is a `down' with reason `{port_exit, Status}', attempt 1,
%%     delay_ms 0.</li>
%% <li>`[ws_port, connection, retry]': a retry is scheduled. The port
%%     program does not report the moment it starts the next attempt, so
%%     this is emitted together with `down' whenever the delay is known
%%     (automatic retries, `retry_fun', port restarts; not in manual mode,
%%     where the owner calls `ws_port:reconnect/2'); the attempt starts
%%     `delay_ms' later. Measurements `#{delay_ms}', metadata adds
%%     `reason' and `attempt' (of the failed attempt).</li>
%% <li>`[ws_port, connection, closed]': final, no more attempts: a failure
%%     that is not retried, retries exhausted, `retry_fun' returned `stop',
%%     a failed first attempt of an awaited connect, `close/1' (reason
%%     `{local, Code, Text}') or the owner's exit. Measurements
%%     `#{count => 1, duration}' (time since the connect command or the
%%     last attempt), metadata adds `reason'.</li>
%% <li>`[ws_port, connection, idle_timeout]': emitted besides `down' or
%%     `closed' when their reason is `idle_timeout' (no frame nor pong for
%%     `idle_timeout' ms). Measurements `#{count => 1}'.</li>
%% </ul>
%% The owner gets the same facts as messages (`ws_port_up',
%% `ws_port_down' with `#{attempt, delay_ms, unsent_bytes}',
%% `ws_port_closed'), so nothing depends on telemetry being present.
-module(ws_port_telemetry).

-export([execute/3]).

-define(BACKEND, {?MODULE, backend}).

%% @doc Emits one telemetry event if telemetry is available.
-spec execute([atom(), ...], map(), map()) -> ok.
execute(Event, Measurements, Metadata) ->
    case backend() of
        none ->
            ok;
        Mod ->
            _ = apply(Mod, execute, [Event, Measurements, Metadata]),
            ok
    end.

%% The module is looked up once and kept in persistent_term; the call goes
%% through a variable so that dialyzer does not ask for telemetry.
-spec backend() -> module() | none.
backend() ->
    case persistent_term:get(?BACKEND, undefined) of
        undefined ->
            Mod = telemetry,
            Backend =
                case code:ensure_loaded(Mod) of
                    {module, Mod} ->
                        case erlang:function_exported(Mod, execute, 3) of
                            true -> Mod;
                            false -> none
                        end;
                    _ ->
                        none
                end,
            persistent_term:put(?BACKEND, Backend),
            Backend;
        Backend ->
            Backend
    end.
