%% @doc Top supervisor of ws_port: one_for_one over the default pool of
%% drivers, registered as `ws_port_driver_1' .. `ws_port_driver_N', where N is
%% the application environment `drivers' (default 2).
%%
%% It also owns the public ETS table of connections, so that the table
%% outlives a crashing driver (the restarted driver clears its old rows).
-module(ws_port_sup).
-behaviour(supervisor).

-include("ws_port_int.hrl").

-export([start_link/0, driver_names/1]).
-export([init/1]).

%% @doc Starts the supervisor, registered as `ws_port_sup'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% @doc The registered names of a pool of N drivers.
-spec driver_names(pos_integer()) -> [atom()].
driver_names(N) ->
    [list_to_atom("ws_port_driver_" ++ integer_to_list(I)) || I <- lists:seq(1, N)].

%% @private
-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    N =
        case application:get_env(ws_port, drivers, 2) of
            I when is_integer(I), I > 0 -> I;
            Bad -> error({bad_env, drivers, Bad})
        end,
    _ = ets:new(?WS_PORT_TAB, [
        set, public, named_table, {read_concurrency, true}, {write_concurrency, true}
    ]),
    _ = ets:new(?WS_PORT_CLOSING, [
        set, public, named_table, {read_concurrency, true}, {write_concurrency, true}
    ]),
    Names = driver_names(N),
    persistent_term:put(?WS_PORT_POOL, {list_to_tuple(Names), atomics:new(1, [{signed, false}])}),
    Children = [
        #{
            id => Name,
            start => {ws_port_driver, start_link, [Name]},
            restart => permanent,
            shutdown => 5000,
            type => worker,
            modules => [ws_port_driver]
        }
     || Name <- Names
    ],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 60}, Children}}.
