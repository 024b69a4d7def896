%% @doc The `retry_fun' contract of {@link ws_port:connect/2}, as pure
%% functions (the driver runs them; EUnit tests them).
%%
%% This is the contract of off_broadway_websocket's `ws_retry_fun': the
%% retry state is the user's own map (initially the `retry_state' option,
%% default {@link default_state/0}). After each failed attempt the fun is
%% called with the current state and returns either the next state, whose
%% `delay' (milliseconds, a non-negative integer) is waited before the next
%% attempt and which is the input of the next call (every key the fun keeps
%% is carried through), or `stop': no more attempts, the connection is
%% closed with the reason of the last failure. After a successful
%% reconnection the state starts again from its initial value.
%%
%% The fun is called with the state only (not the failure reason nor the
%% attempt number: those are in the owner's `ws_port_down' message).
-module(ws_port_retry).

-export([default_state/0, next/2, validate_fun/1, validate_state/1]).

-export_type([retry_fun/0, retry_state/0, next_result/0]).

-type retry_state() :: #{atom() => term()}.
-type retry_fun() :: fun((retry_state()) -> retry_state() | stop).
-type next_result() ::
    {ok, Delay :: non_neg_integer(), retry_state()}
    | stop
    | {error, {bad_return, term()} | {crash, atom(), term()}}.

-define(MAX_DELAY, 4294967295).

%% @doc The initial state used when `retry_fun' is given without
%% `retry_state': five retries, ten seconds apart, as
%% off_broadway_websocket's default (the fun decides what the keys mean).
-spec default_state() -> retry_state().
default_state() ->
    #{max_retries => 5, retries_left => 5, delay => 10000}.

%% @doc Calls `Fun' on `State' and checks what it returns.
%%
%% Returns `{ok, Delay, NextState}' when the fun returned a map with a
%% `delay' key holding an integer in 0..4294967295, `stop' when it returned
%% `stop', `{error, {bad_return, Value}}' for anything else and
%% `{error, {crash, Class, Reason}}' when it raised, exited or threw.
-spec next(retry_fun(), retry_state()) -> next_result().
next(Fun, State) ->
    try Fun(State) of
        stop ->
            stop;
        #{delay := Delay} = Next when
            is_integer(Delay), Delay >= 0, Delay =< ?MAX_DELAY
        ->
            {ok, Delay, Next};
        Other ->
            {error, {bad_return, Other}}
    catch
        Class:Reason -> {error, {crash, Class, Reason}}
    end.

%% @doc Checks a `retry_fun' option: a fun of arity 1.
-spec validate_fun(term()) -> ok | error.
validate_fun(F) when is_function(F, 1) -> ok;
validate_fun(_) -> error.

%% @doc Checks a `retry_state' option: a map (its keys are the user's; the
%% fun's returned map must have `delay').
-spec validate_state(term()) -> ok | error.
validate_state(S) when is_map(S) -> ok;
validate_state(_) -> error.
