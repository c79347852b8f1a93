<?php

namespace App\Console\Commands;

use Illuminate\Console\Command;
use Illuminate\Support\Facades\DB;

class RecordTick extends Command
{
    protected $signature = 'app:tick';

    protected $description = 'Record that the scheduler ran (one row per run)';

    public function handle()
    {
        DB::table('schedule_ticks')->insert([
            'release' => config('app.version'),
            'ran_at' => now(),
        ]);
        $this->info('tick recorded');

        return 0;
    }
}
