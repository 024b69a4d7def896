%% @doc The ws_port application: starts {@link ws_port_sup}, which starts the
%% default pool of {@link ws_port_driver}s (application environment
%% `drivers', default 2).
-module(ws_port_app).
-behaviour(application).

-export([start/2, stop/1]).

%% @private
-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    ws_port_sup:start_link().

%% @private
-spec stop(term()) -> ok.
stop(_State) ->
    ok.
