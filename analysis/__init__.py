"""Reading run directories back: events and configs (`runs`), aggregate statistics through rliable
(`stats`), figures (`figures`), the HTML page (`html`), the whole report (`build`) and clips of an
agent's play (`video`). Only `runs` and `extras` are light: the rest need the `[report]` extra."""
