%% @doc Telemetry shim: calls `telemetry:execute/3' when the telemetry
%% library is present, and does nothing otherwise. ws_port has no hard
%% dependency on telemetry (see DESIGN.md).
%%
%% Events emitted by {@link ws_port_driver}:
%% <ul>
%% <li>`[ws_port, connection, up]': measurements `#{duration}' (native time
%%     units from the connect command to the handshake), metadata
%%     `#{conn, driver, id, url, replay}' (`replay' is true after a port
%%     restart).</li>
%% <li>`[ws_port, connection, down]': measurements `#{duration}' (native
%%     time units since the connect command or the previous attempt),
%%     metadata `#{conn, driver, id, url, reason, info}' (`info' is the port
%%     program's `#{attempt, delay_ms, unsent_bytes}'); only with `retry'.</li>
%% <li>`[ws_port, connection, closed]': measurements `#{duration}' (native
%%     time units since the connect command), metadata
%%     `#{conn, driver, id, url, reason}'.</li>
%% </ul>
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
