// The hello UI's strings in English. The shell merges them under the plugin id: t('hello.title').
export default {
  title: 'Greeter',
  description: 'Greet someone by name. The hello plugin counts every greeting and tells everyone watching at once.',
  form: {
    title: 'Greet someone',
    name: 'Name',
    placeholder: 'e.g. Ada Lovelace',
    submit: 'Greet',
    required: 'Enter a name to greet.',
    tooLong: 'A name has at most {max} characters.',
    readOnly: 'You can see the greetings, but recording one needs the permission "greetings:write".',
    failed: 'The greeting was not recorded',
  },
  result: {
    title: 'Greeting recorded',
    count: 'Greeted once | Greeted {count} times',
  },
  list: {
    title: 'Recorded greetings',
    search: 'Search names',
    name: 'Name',
    count: 'Greetings',
    lastGreeting: 'Last greeting',
    updatedAt: 'Last greeted',
    empty: 'No one has been greeted yet',
    noMatch: 'No name contains "{q}"',
    live: 'Updates live',
  },
  widget: {
    greetings: 'Greetings',
    names: 'Names',
    recent: 'Latest',
    empty: 'No one has been greeted yet',
    open: 'Open the greeter',
    times: '× {count}',
  },
};
