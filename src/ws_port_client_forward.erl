%% @doc The default callback module of {@link ws_port_client}: forwards
%% what happens to a process.
%%
%% `init_arg' is the pid to forward to (or `undefined': frames are then
%% dropped). It gets `{ws_port_client, Client, {text | binary, Data}}' for
%% every message, `{ws_port_client_up, Client, Info}' after every handshake
%% and `{ws_port_client_down, Client, DisconnectInfo}' for every loss.
%% {@link ws_port_client_sup:start_client/2} uses it, forwarding to the
%% caller, when no `module' is given.
-module(ws_port_client_forward).

-behaviour(ws_port_client).

-export([init/1, handle_connect/2, handle_frame/2, handle_disconnect/2]).

%% @doc The state is the pid to forward to.
-spec init(pid() | undefined | []) -> {ok, pid() | undefined}.
init(Pid) when is_pid(Pid) -> {ok, Pid};
init(_) -> {ok, undefined}.

%% @doc Sends `{ws_port_client_up, self(), Info}'.
-spec handle_connect(map(), pid() | undefined) -> {ok, pid() | undefined}.
handle_connect(Info, To) ->
    forward(To, {ws_port_client_up, self(), Info}).

%% @doc Sends `{ws_port_client, self(), Frame}'.
-spec handle_frame({text | binary, binary()}, pid() | undefined) -> {ok, pid() | undefined}.
handle_frame(Frame, To) ->
    forward(To, {ws_port_client, self(), Frame}).

%% @doc Sends `{ws_port_client_down, self(), Info}'.
-spec handle_disconnect(ws_port_client:disconnect_info(), pid() | undefined) ->
    {ok, pid() | undefined}.
handle_disconnect(Info, To) ->
    forward(To, {ws_port_client_down, self(), Info}).

forward(undefined, _Msg) ->
    {ok, undefined};
forward(To, Msg) ->
    To ! Msg,
    {ok, To}.
